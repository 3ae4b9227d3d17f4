"""``save_pretrained`` / ``load_pretrained``: one entry point for every checkpoint family."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from .._version import __version__
from ..config import ViTConfig, check_field_names
from ..errors import CheckpointError
from ..position import resample_position_embedding
from ..vit import ViT
from . import _slots as slots
from . import huggingface
from .atomic import recover_interrupted_save, write_files_atomically
from .families import convert_state_dict, export_state_dict, read_config
from .files import (
    CONFIG_FILE,
    SUPPORTED_SUFFIXES,
    read_json,
    read_weights,
    write_checkpoint_files,
)
from .precedence import ConfigSources, resolve_configs
from .shapes import ShapeFacts

__all__ = [
    "AdaptedCheckpointWarning",
    "NonFiniteWeightsWarning",
    "checkpoint_contents",
    "load_pretrained",
    "save_pretrained",
]

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth", "model.npz")


class AdaptedCheckpointWarning(UserWarning):
    """Loading changed part of a checkpoint: a head re-initialised or a layer dropped."""


class NonFiniteWeightsWarning(UserWarning):
    """A checkpoint holds NaN or infinite weights; the model will output NaN for some inputs."""


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

    The two files replace their namesakes at once (see :mod:`vitlib.checkpoints.atomic`): an
    interrupted save leaves the previous checkpoint or the new one, never a mix, and other files
    in ``directory`` are never touched. ``directory`` may be ``"."`` or a symbolic link to a folder
    (written through).

    Raises:
        FileExistsError: ``directory`` is not empty and ``overwrite`` is False (nothing is
            written; nothing the user has is replaced silently).
        NotADirectoryError: ``directory`` is a file.
        PermissionError: ``directory`` cannot be created or written.
    """
    if not isinstance(model, ViT):
        raise TypeError(f"save_pretrained expects a vitlib.ViT, got {type(model).__name__}.")
    if format not in ("vitlib", "huggingface"):
        raise ValueError(f"format must be 'vitlib' or 'huggingface', got {format!r}.")
    tensors, config = checkpoint_contents(model, format)  # before any file: may refuse the model
    return write_files_atomically(
        directory,
        lambda staging: write_checkpoint_files(staging, tensors, config),
        overwrite=overwrite,
    )


def checkpoint_contents(
    model: ViT, format: Literal["vitlib", "huggingface"] = "vitlib"
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors and the ``config.json`` content that :func:`save_pretrained` writes."""
    if format == "vitlib":
        config: dict[str, Any] = {
            "format": "vitlib",
            "format_version": 1,
            "vitlib_version": __version__,
            "config": model.config.to_dict(),
        }
        tensors = export_state_dict(model, "vitlib")
    else:
        config = huggingface.config_to_hf(model.config)
        tensors = export_state_dict(model, "huggingface")
    return tensors, config


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
    check_field_names(config_overrides, "load_pretrained")
    read = _read_source(source)
    _check_tensors(read.state)
    converted = convert_state_dict(read.state)
    sources = ConfigSources(
        converted.family,
        ShapeFacts.read(converted.state_dict, converted.family),
        stated=read.stated,
        hints={**converted.hints, **read.hints},
        overrides=config_overrides,
    )
    checkpoint, target = resolve_configs(sources)
    model = ViT.from_config(target)
    _load_strict(model, _adapt(dict(converted.state_dict), checkpoint, target), converted.family)
    return model


_URL_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


@dataclass(frozen=True)
class _Read:
    """What a source holds: its tensors, what its own config states, what its hub name implies."""

    state: dict[str, Tensor]
    stated: dict[str, Any] = field(default_factory=dict)
    hints: dict[str, Any] = field(default_factory=dict)


def _read_source(source: str | os.PathLike[str] | Mapping[str, Tensor] | ViT) -> _Read:
    if isinstance(source, ViT):
        state = {key: value.detach().clone() for key, value in source.state_dict().items()}
        return _Read(state, stated=source.config.to_dict())
    if isinstance(source, Mapping):
        return _Read(dict(source))
    if isinstance(source, str) and (
        source.startswith(("hf-hub:", "torchvision:", "http://", "https://"))
    ):
        from .hub import resolve

        path, hub_hints = resolve(source)
        return replace(_read_path(path), hints=hub_hints)
    if isinstance(source, str) and (scheme := _URL_SCHEME.match(source)):
        raise CheckpointError(
            f"cannot load {source!r}: {scheme.group(1)!r} URLs are not supported; expected an "
            f"http(s) URL of a weights file, 'hf-hub:<owner>/<name>', 'torchvision:<name>' or a "
            f"local path (download the file first)."
        )
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"source must be a path, a hub name or a state dict, got {type(source).__name__}."
        )
    return _read_path(Path(source))


def _read_path(path: Path) -> _Read:
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; check the path.")
    if not path.is_dir():
        return _Read(read_weights(path))
    recover_interrupted_save(path)
    config_path = path / CONFIG_FILE
    stated = _stated_config(read_json(config_path), config_path) if config_path.exists() else {}
    return _Read(read_weights(_weights_file(path)), stated=stated)


def _weights_file(folder: Path) -> Path:
    """The weights file of a checkpoint folder: the first of :data:`_WEIGHT_FILES` present
    (safetensors first, as Hugging Face prefers), else the only file with a weights suffix."""
    for name in _WEIGHT_FILES:
        if (folder / name).exists():
            return folder / name
    candidates = sorted(
        entry
        for entry in folder.iterdir()
        if entry.suffix.lower() in SUPPORTED_SUFFIXES and not entry.name.startswith(".")
    )
    if len(candidates) != 1:
        found = [entry.name for entry in candidates] or "none"
        raise CheckpointError(
            f"expected one weights file in {folder}: one of {', '.join(_WEIGHT_FILES)}, or a "
            f"single file ending in {', '.join(SUPPORTED_SUFFIXES)}; found {found}. Load the "
            f"file you mean by its path."
        )
    return candidates[0]


def _stated_config(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """The ``ViTConfig`` fields the ``config.json`` at ``path`` states (read by its family)."""
    try:
        stated = read_config(data)
    except (CheckpointError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} is not a valid model config: {error}") from error
    if stated is None:
        raise CheckpointError(
            f"{path} is not a vitlib, Hugging Face or timm config (no 'format', 'model_type' or "
            f"'architecture' key)."
        )
    return stated


def _check_tensors(state: Mapping[str, Any]) -> None:
    """Refuse non-tensor and non-floating values; warn about NaN or infinite weights."""
    not_tensors = [key for key, value in state.items() if not isinstance(value, Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"the checkpoint's entries {not_tensors[:5]} are not tensors; expected a state dict "
            f"of name -> torch.Tensor (model.state_dict())."
        )
    not_float = {
        key: str(value.dtype).removeprefix("torch.")
        for key, value in state.items()
        if not value.is_floating_point()
    }
    if not_float:
        named = ", ".join(f"{key} ({dtype})" for key, dtype in list(not_float.items())[:5])
        raise CheckpointError(
            f"the checkpoint holds {len(not_float)} tensor(s) that are not real floating point: "
            f"{named}{' ...' if len(not_float) > 5 else ''}; ViT weights are float32, float16, "
            f"bfloat16 or float64. Integer, bool or complex values would be cast silently into "
            f"wrong weights; re-export the float weights."
        )
    non_finite = [key for key, value in state.items() if not bool(torch.isfinite(value).all())]
    if non_finite:
        warnings.warn(
            f"the checkpoint holds NaN or infinite values in {len(non_finite)} tensor(s): "
            f"{non_finite[:5]}{' ...' if len(non_finite) > 5 else ''}; the model will output NaN. "
            f"The file is damaged or the training diverged; use an earlier checkpoint.",
            NonFiniteWeightsWarning,
            stacklevel=3,
        )


def _adapt(state: dict[str, Tensor], source: ViTConfig, target: ViTConfig) -> dict[str, Tensor]:
    if source.grid_size != target.grid_size:
        state[slots.POSITION.key()] = resample_position_embedding(
            state[slots.POSITION.key()],
            source.grid_size,
            target.grid_size,
            num_prefix_tokens=int(source.class_token),
        )
    if source.in_channels != target.in_channels:
        patcher = slots.PATCH.key("weight")
        state[patcher] = adapt_input_channels(state[patcher], target.in_channels)
    dropped: list[str] = []
    if source.representation_size != target.representation_size:
        dropped += [key for key in state if slots.PRE_LOGITS.owns(key)]
    head_reset = source.num_features != target.num_features or (
        source.num_classes != target.num_classes
    )
    if head_reset:
        dropped += [key for key in state if slots.HEAD.owns(key)]
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
                "; ".join(reason) + ": train it before use.", AdaptedCheckpointWarning, stacklevel=3
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
        key
        for key in expected
        if (slots.HEAD.owns(key) or slots.PRE_LOGITS.owns(key)) and key not in state
    }
    missing = sorted(set(expected) - set(state) - reinitialised)
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"the {family} checkpoint does not fit the inferred model {model.config.name or ''}: "
            f"missing keys {missing[:10]}{' ...' if len(missing) > 10 else ''}, unexpected keys "
            f"{unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}."
        )
    mismatched = [
        f"{key}: checkpoint {tuple(tensor.shape)}, model {tuple(expected[key].shape)}"
        for key, tensor in state.items()
        if tensor.shape != expected[key].shape
    ]
    if mismatched:
        raise CheckpointError(
            f"shape mismatch for {len(mismatched)} tensor(s) of the {family} checkpoint: "
            f"{'; '.join(mismatched[:6])}{' ...' if len(mismatched) > 6 else ''}. The model's "
            f"sizes were read from the checkpoint itself (embedding_dim from the patch kernel, "
            f"mlp_size from layer 0's fc1), so one odd tensor there shows as mismatches "
            f"elsewhere; the checkpoint is damaged or mixes two models."
        )
    with torch.no_grad():
        model.load_state_dict(state, strict=False)
