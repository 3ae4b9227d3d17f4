"""``save_pretrained`` / ``load_pretrained``: one entry point for every checkpoint family."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from .. import __version__
from ..config import SIZES, ViTConfig, field_names, parse_preset_name
from ..errors import CheckpointError
from ..position import resample_position_embedding
from ..vit import ViT
from . import google_npz, huggingface, learnpytorch, timm, torchvision, vitlib_layout
from ._mapping import Converted
from .files import read_json, read_weights, write_directory_atomically
from .vitlib_layout import config_from_shapes, heads_from_presets, square_image_size

__all__ = [
    "FAMILIES",
    "AdaptedCheckpointWarning",
    "convert_state_dict",
    "detect_family",
    "export_state_dict",
    "load_pretrained",
    "save_pretrained",
]

#: Checkpoint families, in detection order: name -> (matches(keys), to_vitlib(state)).
FAMILIES: dict[
    str, tuple[Callable[[set[str]], bool], Callable[[Mapping[str, Tensor]], Converted]]
] = {
    "learnpytorch": (learnpytorch.matches, learnpytorch.to_vitlib),
    "vitlib": (vitlib_layout.matches, vitlib_layout.to_vitlib),
    "timm": (timm.matches, timm.to_vitlib),
    "torchvision": (torchvision.matches, torchvision.to_vitlib),
    "huggingface": (huggingface.matches, huggingface.to_vitlib),
    "google-npz": (google_npz.matches, google_npz.to_vitlib),
}
ExportFamily = Literal["vitlib", "timm", "huggingface"]
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth", "model.npz")
# Fields whose checkpoint value can be changed at load time, each by its documented rule.
_ADAPTABLE = {"img_size", "num_classes", "in_channels", "representation_size"}
_STRUCTURAL = {
    "embedding_dim",
    "patch_size",
    "num_transformer_layers",
    "mlp_size",
    "qkv_bias",
    "class_token",
    "num_register_tokens",
}


class AdaptedCheckpointWarning(UserWarning):
    """Loading changed part of a checkpoint: a head re-initialised or a layer dropped."""


def detect_family(keys: set[str] | Mapping[str, Any]) -> str:
    """Name the family of a state dict from its keys (see :data:`FAMILIES`).

    Raises:
        CheckpointError: No family matches; the message shows some keys and the families known.
    """
    names = set(keys)
    for family, (matches, _) in FAMILIES.items():
        if matches(names):
            return family
    sample = sorted(names)[:8]
    raise CheckpointError(
        f"unrecognised checkpoint format: none of the known families ({', '.join(FAMILIES)}) "
        f"matches keys such as {sample}. vitlib reads ViT checkpoints of those families only."
    )


def convert_state_dict(state: Mapping[str, Tensor], family: str | None = None) -> Converted:
    """Convert a foreign state dict to vitlib's layout (``family`` detected when None)."""
    name = family or detect_family(state)
    if name not in FAMILIES:
        raise CheckpointError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}.")
    return FAMILIES[name][1](state)


def export_state_dict(model: ViT, family: ExportFamily = "timm") -> dict[str, Tensor]:
    """``model``'s weights under another family's names (``"timm"`` or ``"huggingface"``).

    Loading the result into the peer's model of the same architecture gives the same outputs;
    converting it back with :func:`convert_state_dict` gives ``model.state_dict()`` exactly.
    """
    state = {key: value.detach() for key, value in model.state_dict().items()}
    if family == "vitlib":
        return state
    if family == "timm":
        return timm.from_vitlib(state, model.config)
    if family == "huggingface":
        return huggingface.from_vitlib(state, model.config)
    raise CheckpointError(f"cannot export to {family!r}; choose 'vitlib', 'timm' or 'huggingface'.")


def save_pretrained(
    model: ViT,
    directory: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    format: Literal["vitlib", "huggingface"] = "vitlib",
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory``.

    ``format="huggingface"`` writes a directory that ``transformers``'
    ``ViTForImageClassification.from_pretrained`` (or ``ViTModel``) reads as is.

    Raises:
        FileExistsError: ``directory`` is not empty and ``overwrite`` is False (nothing is
            written; nothing the user has is replaced silently).
    """
    if not isinstance(model, ViT):
        raise TypeError(f"save_pretrained expects a vitlib.ViT, got {type(model).__name__}.")
    if format == "vitlib":
        config: dict[str, Any] = {
            "format": "vitlib",
            "format_version": 1,
            "vitlib_version": __version__,
            "config": model.config.to_dict(),
        }
        tensors = export_state_dict(model, "vitlib")
    elif format == "huggingface":
        config = huggingface.config_to_hf(model.config)
        tensors = export_state_dict(model, "huggingface")
    else:
        raise ValueError(f"format must be 'vitlib' or 'huggingface', got {format!r}.")
    return write_directory_atomically(Path(directory), tensors, config, overwrite=overwrite)


def load_pretrained(
    source: str | os.PathLike[str] | Mapping[str, Tensor] | ViT, **config_overrides: Any
) -> ViT:
    """Load a ViT from any supported checkpoint, optionally changing its config.

    Args:
        source: A directory written by :func:`save_pretrained` or by Hugging Face's
            ``save_pretrained``; a weights file of any family (``.safetensors``, ``.npz``,
            ``.pth``/``.pt``/``.bin``); a state dict; ``"hf-hub:<repo>"``; ``"torchvision:<name>"``
            (e.g. ``"torchvision:vit_b_16"``) or an ``http(s)`` URL of a weights file; or a
            :class:`~vitlib.ViT`, to get a copy adapted by the overrides.
        **config_overrides: ``ViTConfig`` fields. ``img_size`` resamples the position
            embeddings (bicubic); ``num_classes`` re-initialises the head (with a warning);
            ``in_channels`` adapts the patch kernel (sum for 1 channel, else cycled and scaled by
            old/new channels); ``representation_size=None`` drops a pre-logits layer;
            ``num_heads`` is needed when no preset and no config tells it; dropouts, pooling and
            ``layer_norm_eps`` are free. Changing a shape-fixed field is an error.

    Raises:
        CheckpointError: Unreadable or unrecognised files, missing or unexpected keys, shape
            mismatches, conflicting overrides, refused pickles.
    """
    unknown = set(config_overrides) - set(field_names())
    if unknown:
        raise TypeError(
            f"load_pretrained got unknown config field(s) {sorted(unknown)}; "
            f"valid fields: {', '.join(field_names())}."
        )
    state, hints = _read_source(source)
    converted = convert_state_dict(state)
    return _build(converted, {**converted.hints, **hints}, config_overrides)


def _read_source(
    source: str | os.PathLike[str] | Mapping[str, Tensor] | ViT,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    if isinstance(source, ViT):
        state = {key: value.detach().clone() for key, value in source.state_dict().items()}
        return state, {"_exact": source.config.to_dict()}
    if isinstance(source, Mapping):
        return dict(source), {}
    if isinstance(source, str) and (
        source.startswith(("hf-hub:", "torchvision:", "http://", "https://"))
    ):
        from .hub import resolve

        source, hub_hints = resolve(source)
        state, hints = _read_path(Path(source))
        return state, {**hub_hints, **hints}
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"source must be a path, a hub name or a state dict, got {type(source).__name__}."
        )
    return _read_path(Path(source))


def _read_path(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; check the path.")
    if path.is_file():
        return read_weights(path), {}
    config_path = path / "config.json"
    hints = _hints_from_config(read_json(config_path), config_path) if config_path.exists() else {}
    candidates = [path / name for name in _WEIGHT_FILES if (path / name).exists()]
    if not candidates:
        candidates = sorted(
            p for p in path.iterdir() if p.suffix in (".safetensors", ".npz", ".pth")
        )
    if len(candidates) != 1:
        found = [p.name for p in candidates] or "none"
        raise CheckpointError(
            f"expected exactly one weights file in {path} (e.g. model.safetensors), found {found}."
        )
    return read_weights(candidates[0]), hints


def _hints_from_config(data: dict[str, Any], path: Path) -> dict[str, Any]:
    if data.get("format") == "vitlib":
        return {"_exact": dict(data.get("config", {}))}
    if data.get("model_type") == "vit":
        return huggingface.config_from_hf(data)
    if "architecture" in data:  # timm's hub config
        size, _, img_size = parse_preset_name(str(data["architecture"]).split(".")[0])
        hints: dict[str, Any] = {"num_heads": SIZES[size].num_heads}
        input_size = data.get("pretrained_cfg", {}).get("input_size")
        if input_size:
            hints["img_size"] = tuple(input_size[1:])
        elif img_size:
            hints["img_size"] = img_size
        return hints
    raise CheckpointError(
        f"{path} is not a vitlib, Hugging Face or timm config (no 'format', 'model_type' or "
        f"'architecture' key)."
    )


def _build(converted: Converted, hints: dict[str, Any], overrides: dict[str, Any]) -> ViT:
    state = converted.state_dict
    found = config_from_shapes(state)
    grid_tokens = found.pop("_grid_tokens")
    has_layer_scale = found.pop("_has_layer_scale")
    _check_consistent(found, hints, converted.family)
    _check_structural(found, overrides, converted.family)
    values: dict[str, Any] = {"mlp_dropout": 0.0, "embedding_dropout": 0.0, "attn_dropout": 0.0}
    values.update(hints.pop("_exact", {}))
    values.update({key: value for key, value in hints.items() if key in field_names()})
    values.update(found)
    values.update({k: v for k, v in overrides.items() if k not in _ADAPTABLE | _STRUCTURAL})
    if has_layer_scale != (values.get("layer_scale_init") is not None):
        values["layer_scale_init"] = 1e-5 if has_layer_scale else None  # the value is in gamma
    if "img_size" not in values:
        values["img_size"] = square_image_size(grid_tokens, found["patch_size"])
    if values["img_size"] is None:
        values["img_size"] = _source_img_from_override(overrides, grid_tokens, found["patch_size"])
    if "num_heads" not in values:
        values["num_heads"] = _heads(found)
    source = ViTConfig(**values)
    if source.num_patches != grid_tokens:
        raise CheckpointError(
            f"the position embedding has {grid_tokens} patch positions, but img_size "
            f"{source.img_size} with patch {source.patch_size} makes {source.num_patches}; "
            f"pass the checkpoint's img_size."
        )
    target = source.replace(**{k: v for k, v in overrides.items() if k in _ADAPTABLE})
    model = ViT.from_config(target)
    _load_strict(model, _adapt(dict(state), source, target), converted.family)
    return model


def _check_consistent(found: dict[str, Any], hints: dict[str, Any], family: str) -> None:
    for key, value in hints.items():
        if key in found and _normal(found[key]) != _normal(value):
            raise CheckpointError(
                f"the {family} checkpoint's config says {key}={value!r} but its tensors have "
                f"{key}={found[key]!r}; the config and the weights do not belong together."
            )


def _normal(value: Any) -> Any:
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == value[1]:
        return value[0]
    return tuple(value) if isinstance(value, list) else value


def _check_structural(found: dict[str, Any], overrides: dict[str, Any], family: str) -> None:
    for key in sorted(_STRUCTURAL & set(overrides)):
        if _normal(overrides[key]) != _normal(found[key]):
            raise CheckpointError(
                f"cannot load the {family} checkpoint with {key}={overrides[key]!r}: its weights "
                f"have {key}={found[key]!r}, which fixes the tensor shapes. Drop the override."
            )
    representation = overrides.get("representation_size", found["representation_size"])
    if representation not in (None, found["representation_size"]):
        raise CheckpointError(
            f"representation_size can only be kept ({found['representation_size']}) or dropped "
            f"(None) at load time, got {representation!r}."
        )


def _source_img_from_override(
    overrides: dict[str, Any], grid_tokens: int, patch: int | tuple[int, int]
) -> Any:
    wanted = overrides.get("img_size")
    if wanted is not None:
        probe = ViTConfig(img_size=wanted, patch_size=patch, embedding_dim=8, num_heads=1)
        if probe.num_patches == grid_tokens:
            return wanted
    raise CheckpointError(
        f"the checkpoint's position embedding has {grid_tokens} patch positions, which is not a "
        f"square grid; pass its img_size=(height, width) explicitly."
    )


def _heads(found: dict[str, Any]) -> int:
    heads = heads_from_presets(
        found["embedding_dim"], found["num_transformer_layers"], found["mlp_size"]
    )
    if heads is None:
        dim = found["embedding_dim"]
        options = [h for h in range(1, dim + 1) if dim % h == 0 and dim // h in (32, 64, 16)]
        raise CheckpointError(
            f"cannot tell num_heads for a checkpoint with embedding_dim={dim}, "
            f"{found['num_transformer_layers']} layers and mlp_size={found['mlp_size']}: it "
            f"matches no preset and has no config. Pass num_heads=... (for head widths 64/32/16: "
            f"{options or 'a divisor of embedding_dim'})."
        )
    return heads


def _adapt(state: dict[str, Tensor], source: ViTConfig, target: ViTConfig) -> dict[str, Tensor]:
    if source.grid_size != target.grid_size:
        state["position_embedding"] = resample_position_embedding(
            state["position_embedding"],
            source.grid_size,
            target.grid_size,
            num_prefix_tokens=int(source.class_token),
        )
    if source.in_channels != target.in_channels:
        state["patch_embedding.patcher.weight"] = adapt_input_channels(
            state["patch_embedding.patcher.weight"], target.in_channels
        )
    dropped: list[str] = []
    if source.representation_size != target.representation_size:
        dropped += [key for key in state if key.startswith("pre_logits.")]
    head_reset = source.num_features != target.num_features or (
        source.num_classes != target.num_classes
    )
    if head_reset:
        dropped += [key for key in state if key.startswith("head.")]
    for key in dropped:
        del state[key]
    if dropped:
        reason = []
        if source.representation_size != target.representation_size:
            reason.append(f"pre-logits layer ({source.representation_size}) dropped")
        if head_reset and target.num_classes:
            reason.append(
                f"head re-initialised for {target.num_classes} classes "
                f"(checkpoint: {source.num_classes})"
            )
        if reason:
            warnings.warn(
                "; ".join(reason) + ": train it before use.", AdaptedCheckpointWarning, stacklevel=4
            )
    return state


def adapt_input_channels(weight: Tensor, channels: int) -> Tensor:
    """Adapt a patch kernel ``(D, C, P_h, P_w)`` to ``channels`` input channels.

    One channel: the sum over the old channels (a gray image gives what its RGB copy gave).
    Otherwise: the old channels repeated cyclically, scaled by ``old / new`` channels (exact for
    a multiple of the old count on inputs whose channels repeat the same way).
    """
    old = weight.shape[1]
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-channels // old)
    return weight.repeat(1, repeats, 1, 1)[:, :channels] * (old / channels)


def _load_strict(model: ViT, state: dict[str, Tensor], family: str) -> None:
    expected = model.state_dict()
    reinitialised = {
        key for key in expected if key.startswith(("head.", "pre_logits.")) and key not in state
    }
    missing = sorted(set(expected) - set(state) - reinitialised)
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"the {family} checkpoint does not fit the inferred model {model.config.name or ''}: "
            f"missing keys {missing[:10]}{' ...' if len(missing) > 10 else ''}, unexpected keys "
            f"{unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}."
        )
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise CheckpointError(
                f"shape mismatch for {key}: checkpoint has {tuple(tensor.shape)}, the model "
                f"expects {tuple(expected[key].shape)}."
            )
    with torch.no_grad():
        model.load_state_dict(state, strict=False)
