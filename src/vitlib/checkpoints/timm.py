"""timm's ``VisionTransformer`` (``patch_embed.proj``, ``blocks.N.attn.qkv``...) <-> vitlib.

timm's layout is vitlib's under other names, so both directions are pure renames. Its pooling
is not in the weights: with ``fc_norm=False``, ``global_pool="avg"`` and ``"token"`` have the
same tensors. It is read from timm's ``config.json`` (``model_args.global_pool``, else
``global_pool``, else timm's default ``"token"``; ``"avg"`` loads as ``pool="mean"``); a bare
state dict loads with the class token and a warning that names ``pool="mean"``. ``fc_norm`` (the
norm after pooling) and timm-style register tokens are not vitlib's architecture and are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from torch import Tensor

from vitlib.checkpoints import keys as slots
from vitlib.checkpoints.family import (
    ConfigFormat,
    Converted,
    Family,
    Table,
    checked_fields,
    count_layers,
    key_pairs,
    rename,
)
from vitlib.config import SIZES, ViTConfig, parse_preset_name
from vitlib.errors import CheckpointError

__all__ = [
    "FAMILY",
    "from_vitlib",
    "labels_from_timm",
    "matches",
    "preprocessing_from_timm",
    "read_config",
    "to_vitlib",
]

NAME = "timm"

_TABLE: Table = (
    ("cls_token", slots.CLASS_TOKEN),
    ("pos_embed", slots.POSITION),
    ("patch_embed.proj", slots.PATCH),
    ("blocks.{i}.norm1", slots.MSA_NORM),
    ("blocks.{i}.attn.qkv", slots.QKV),
    ("blocks.{i}.attn.proj", slots.OUT_PROJ),
    ("blocks.{i}.ls1", slots.MSA_SCALE),
    ("blocks.{i}.norm2", slots.MLP_NORM),
    ("blocks.{i}.mlp.fc1", slots.FC1),
    ("blocks.{i}.mlp.fc2", slots.FC2),
    ("blocks.{i}.ls2", slots.MLP_SCALE),
    ("norm", slots.NORM),
    ("head", slots.HEAD),
)
_LAYER = r"blocks\.(\d+)\."


def matches(keys: set[str]) -> bool:
    """Whether ``keys`` look like a timm ViT state dict."""
    return "patch_embed.proj.weight" in keys and any(key.startswith("blocks.") for key in keys)


def to_vitlib(state: Mapping[str, Tensor]) -> Converted:
    """Convert a timm ViT state dict to vitlib's layout."""
    if "fc_norm.weight" in state:
        raise CheckpointError(
            "this timm checkpoint has fc_norm (a norm after pooling, timm's default for "
            "global_pool='avg'); vitlib applies the final norm before pooling, as the paper does, "
            "so these weights cannot be mapped."
        )
    if "reg_token" in state:
        raise CheckpointError(
            "this timm checkpoint has reg_token: timm's register tokens take no class position "
            "embedding, unlike vitlib's; it cannot be mapped exactly."
        )
    depth = count_layers(state, _LAYER)
    converted = rename(state, key_pairs(_TABLE), depth, family=NAME)
    return Converted(NAME, converted, {"layer_norm_eps": 1e-6})


def from_vitlib(state: Mapping[str, Tensor], config: ViTConfig) -> dict[str, Tensor]:
    """Convert a vitlib state dict to timm's names (``timm.create_model(..., pretrained=False)``
    with matching arguments then loads it with ``load_state_dict``)."""
    if config.representation_size is not None:
        raise CheckpointError(
            "timm's VisionTransformer has no pre-logits layer; export a model with "
            "representation_size=None to timm."
        )
    if config.num_register_tokens:
        raise CheckpointError(
            "timm's register tokens differ from vitlib's (no position embedding for the class "
            "token there); export a model with num_register_tokens=0 to timm."
        )
    exported = key_pairs(_TABLE, to_foreign=True)
    return rename(state, exported, config.num_transformer_layers, family="vitlib")


# timm's global_pool -> vitlib's pool (timm's "avg" with fc_norm=False; fc_norm is refused).
_POOLS: Final = {"token": "token", "avg": "mean"}


def read_config(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a timm hub ``config.json`` states: ``num_heads`` of the architecture's size, and the
    input size of ``pretrained_cfg`` (or of the name). None for any other JSON, a Hugging Face
    config (``model_type`` ``"vit"``) included."""
    if "architecture" not in data or data.get("model_type") == "vit":
        return None
    architecture = data["architecture"]
    if not isinstance(architecture, str):
        raise CheckpointError(f"'architecture' must be a timm model name, got {architecture!r}")
    size, _, img_size = parse_preset_name(architecture.split(".")[0])
    stated: dict[str, Any] = {"num_heads": SIZES[size].num_heads}
    model_args = data.get("model_args", {})
    pool = model_args.get("global_pool") if isinstance(model_args, dict) else None
    pool = data.get("global_pool", "token") if pool is None else pool  # timm's default
    if pool not in _POOLS:
        raise CheckpointError(
            f"'global_pool' is {pool!r}; vitlib pools as timm's {sorted(_POOLS)} do"
        )
    stated["pool"] = _POOLS[pool]
    pretrained_cfg = data.get("pretrained_cfg", {})
    if not isinstance(pretrained_cfg, dict):
        raise CheckpointError(
            f"'pretrained_cfg' must be a JSON object, got {type(pretrained_cfg).__name__}"
        )
    input_size = pretrained_cfg.get("input_size")
    if input_size is not None:
        if not isinstance(input_size, list) or len(input_size) != 3:
            raise CheckpointError(
                f"'pretrained_cfg.input_size' must be [channels, height, width], got {input_size!r}"
            )
        stated["img_size"] = tuple(input_size[1:])
    elif img_size:
        stated["img_size"] = img_size
    return checked_fields(stated)


def labels_from_timm(data: Mapping[str, Any]) -> list[str] | None:
    """The ``label_names`` of a timm hub ``config.json``, if it has them."""
    names = data.get("label_names")
    if names is None:
        return None
    if not isinstance(names, list):
        raise CheckpointError(f"'label_names' must be a list of names, got {names!r:.80}")
    return names


_INTERPOLATIONS: Final = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest-exact"}


def preprocessing_from_timm(
    data: Mapping[str, Any], side_files: Mapping[str, Mapping[str, Any]], config: ViTConfig
) -> dict[str, Any] | None:
    """``Preprocessing`` fields from a timm ``pretrained_cfg``: ``input_size``, ``mean``,
    ``std``, ``crop_pct`` and ``interpolation`` (the shorter side to ``size / crop_pct``, then a
    centre crop); None without an ``input_size``.

    Raises:
        CheckpointError: A crop mode or filter vitlib does not have (the message names it).
    """
    cfg = data.get("pretrained_cfg")
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get("input_size"), list):
        return None
    interpolation = cfg.get("interpolation", "bicubic")
    if interpolation not in _INTERPOLATIONS:
        raise CheckpointError(
            f"'pretrained_cfg.interpolation' is {interpolation!r}; vitlib has "
            f"{sorted(_INTERPOLATIONS)}"
        )
    if cfg.get("crop_mode", "center") != "center":
        raise CheckpointError(
            f"'pretrained_cfg.crop_mode' is {cfg['crop_mode']!r}; vitlib crops the centre only"
        )
    channels, height, width = cfg["input_size"]
    fields: dict[str, Any] = {
        "image_size": (height, width),
        "channels": channels,
        "resize": "center_crop",
        "crop_ratio": cfg.get("crop_pct", 0.875),
        "interpolation": _INTERPOLATIONS[interpolation],
    }
    return fields | {name: cfg[name] for name in ("mean", "std") if name in cfg}


FAMILY: Final = Family(
    NAME,
    "timm",
    matches,
    to_vitlib,
    from_vitlib,
    ConfigFormat(
        "an 'architecture' (a timm model name)",
        read_config,
        labels_from_timm,
        preprocessing_from_timm,
    ),
    untold={
        "pool": (
            "a timm state dict does not record its pooling (global_pool='token' and 'avg' "
            "have the same tensors); loaded with the class token, timm's default. If the model "
            "was built with global_pool='avg' (and fc_norm=False), load it with pool='mean'."
        )
    },
)
