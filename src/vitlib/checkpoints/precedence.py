"""Which source tells each field of a loaded checkpoint's config: the precedence, in one place."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from vitlib._checks import MAX_LAYER_SCALE_INIT
from vitlib.checkpoints.shapes import ShapeFacts
from vitlib.config import PRESET_DROPOUT, ViTConfig
from vitlib.errors import CheckpointError

__all__ = ["ADAPTABLE", "STRUCTURAL", "ConfigSources", "resolve_configs"]

#: Fields an override changes between the checkpoint and the model, each by its documented rule.
ADAPTABLE: Final = frozenset({"img_size", "num_classes", "in_channels", "representation_size"})
#: Fields the tensors fix and no override can change.
STRUCTURAL: Final = frozenset(
    {
        "embedding_dim",
        "patch_size",
        "num_transformer_layers",
        "mlp_size",
        "qkv_bias",
        "class_token",
        "num_register_tokens",
    }
)


@dataclass(frozen=True)
class ConfigSources:
    """Everything that tells a checkpoint's config, strongest first.

    Attributes:
        family: The checkpoint's family, for messages.
        tensors: What the tensors' shapes fix.
        stated: ``ViTConfig`` fields the checkpoint's own config states: vitlib's
            ``config.json`` states them all, Hugging Face's and timm's some.
        hints: Fields the family's conventions imply (its layer-norm epsilon; Google's heads,
            read from the attention kernels) or the hub name (torchvision's image size).
        overrides: The caller's keyword arguments.
    """

    family: str
    tensors: ShapeFacts
    stated: Mapping[str, Any] = field(default_factory=dict)
    hints: Mapping[str, Any] = field(default_factory=dict)
    overrides: Mapping[str, Any] = field(default_factory=dict)


def resolve_configs(sources: ConfigSources) -> tuple[ViTConfig, ViTConfig]:
    """The checkpoint's config, and the config of the model to build from it.

    Each field comes from the first source that tells it: the tensors' shapes, the checkpoint's
    own config, the hints, guesses from the tensors, then the defaults. Overrides may not
    contradict the tensors or a stated ``num_heads``, except the ``ADAPTABLE`` fields, which
    are the model's. "Which source wins" in docs/pretrained.md sets this out in full.

    Returns:
        ``(checkpoint_config, model_config)``: they differ in the adaptable fields only.

    Raises:
        CheckpointError: The config or the hints contradict the tensors, an override contradicts
            the tensors or a stated ``num_heads``, or nothing tells ``num_heads`` or the image
            size of a grid that is not square.
        ConfigError: The fields do not make a valid config (e.g. ``num_heads`` does not divide
            the width).
    """
    tensors, overrides = sources.tensors, sources.overrides
    _check_agreement(sources)
    values: dict[str, Any] = {
        **PRESET_DROPOUT,  # no dropout unless the checkpoint's config says so, as presets
        **sources.hints,
        **sources.stated,
        **tensors.fields(),
        **{key: value for key, value in overrides.items() if key not in ADAPTABLE | STRUCTURAL},
    }
    values["layer_scale_init"] = _layer_scale_init(values.get("layer_scale_init"), sources)
    if "img_size" not in values:
        values["img_size"] = tensors.square_image_size() or _image_size_from(overrides, tensors)
    if "num_heads" not in values:
        values["num_heads"] = _heads_from_presets(tensors)
    checkpoint = ViTConfig(**values)
    if checkpoint.num_patches != tensors.grid_tokens:
        raise CheckpointError(
            f"the position embedding has {tensors.grid_tokens} patch positions, but img_size "
            f"{checkpoint.img_size} with patch {checkpoint.patch_size} makes "
            f"{checkpoint.num_patches}; pass the checkpoint's img_size."
        )
    model = checkpoint.replace(**{k: v for k, v in overrides.items() if k in ADAPTABLE})
    return checkpoint, model


def _check_agreement(sources: ConfigSources) -> None:
    """Refuse a config, hint or override that contradicts the tensors or a stated num_heads."""
    found, family = sources.tensors.fields(), sources.family
    for key, value in {**sources.hints, **sources.stated}.items():
        if key in found and _normal(found[key]) != _normal(value):
            raise CheckpointError(
                f"the {family} checkpoint's config says {key}={value!r} but its tensors have "
                f"{key}={found[key]!r}; the config and the weights do not belong together."
            )
    layer_scale = sources.tensors.layer_scale
    if "layer_scale_init" in sources.stated and layer_scale != (
        sources.stated["layer_scale_init"] is not None
    ):
        raise CheckpointError(
            f"the {family} checkpoint's config says layer_scale_init="
            f"{sources.stated['layer_scale_init']!r} but its tensors "
            f"{'have' if layer_scale else 'have no'} LayerScale weights; the config and the "
            f"weights do not belong together."
        )
    overrides = sources.overrides
    if "layer_scale_init" in overrides and layer_scale != (
        overrides["layer_scale_init"] is not None
    ):
        raise CheckpointError(
            f"cannot load the {family} checkpoint with layer_scale_init="
            f"{overrides['layer_scale_init']!r}: its weights "
            f"{'have' if layer_scale else 'have no'} LayerScale, which fixes the tensors. Drop "
            f"the override (a value only sets the start of training, the weights hold the rest)."
        )
    for key in sorted(STRUCTURAL & set(overrides)):
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
    # The same tensors split into other heads load without error but compute another function.
    stated = sources.stated.get("num_heads", sources.hints.get("num_heads"))
    wanted = overrides.get("num_heads")
    if stated is not None and wanted is not None and wanted != stated:
        raise CheckpointError(
            f"the checkpoint states num_heads={stated}, but num_heads={wanted} was given; the "
            f"weights would load and compute something else. Drop the num_heads override (it is "
            f"for checkpoints that do not state it)."
        )


def _normal(value: Any) -> Any:
    """``value`` comparable across forms: ``(n, n)`` and ``[n, n]`` are ``n``, lists tuples."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and value[0] == value[1]:
        return value[0]
    return tuple(value) if isinstance(value, list) else value


def _image_size_from(overrides: Mapping[str, Any], tensors: ShapeFacts) -> Any:
    """The ``img_size`` override, when its grid has as many positions as the tensors."""
    wanted = overrides.get("img_size")
    if wanted is not None:
        probe = ViTConfig(
            img_size=wanted, patch_size=tensors.patch_size, embedding_dim=8, num_heads=1
        )
        if probe.num_patches == tensors.grid_tokens:
            return wanted
    raise CheckpointError(
        f"the checkpoint's position embedding has {tensors.grid_tokens} patch positions, which "
        f"is not a square grid; pass its img_size=(height, width) explicitly."
    )


def _layer_scale_init(told: float | None, sources: ConfigSources) -> float | None:
    """LayerScale's initial value: None without LayerScale weights; else the value the config
    or an override tells, or else the mean magnitude of the ``gamma`` weights, which the
    tensors hold (never a value from elsewhere, which save_pretrained would then record)."""
    mean = sources.tensors.gamma_mean
    if mean is None:
        return None
    if told is not None:
        return told
    if not 0.0 < mean <= MAX_LAYER_SCALE_INIT:
        raise CheckpointError(
            f"the {sources.family} checkpoint has LayerScale weights whose mean magnitude, "
            f"{mean}, is no valid layer_scale_init (> 0, at most {MAX_LAYER_SCALE_INIT}), and "
            f"its config does not state the value; pass layer_scale_init=... (the value it was "
            f"trained from, e.g. 1e-5)."
        )
    return mean


def _heads_from_presets(tensors: ShapeFacts) -> int:
    heads = tensors.heads_from_presets()
    if heads is None:
        dim = tensors.embedding_dim
        options = [dim // width for width in (64, 32, 16) if dim % width == 0]
        raise CheckpointError(
            f"cannot tell num_heads for a checkpoint with embedding_dim={dim}, "
            f"{tensors.num_transformer_layers} layers and mlp_size={tensors.mlp_size}: it "
            f"matches no preset and has no config. Pass num_heads=... (the commands' --num-heads; "
            f"for head widths 64/32/16: {options or 'a divisor of embedding_dim'})."
        )
    return heads
