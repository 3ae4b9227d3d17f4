"""vitlib's own state-dict layout as a "family", and reading a config back from tensor shapes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final, Literal, overload

from torch import Tensor

from ..config import SIZES, ViTConfig
from ..errors import CheckpointError
from . import _slots as slots
from ._mapping import Converted, Family, count_layers

__all__ = ["FAMILY", "config_from_shapes", "from_vitlib", "matches", "to_vitlib"]

NAME = "vitlib"


def matches(keys: set[str]) -> bool:
    """Whether ``keys`` are vitlib's own layout."""
    return slots.PATCH.key("weight") in keys and any(slots.QKV.owns(key) for key in keys)


def to_vitlib(state: Mapping[str, Tensor]) -> Converted:
    """vitlib's layout needs no conversion."""
    return Converted(NAME, dict(state))


def from_vitlib(state: Mapping[str, Tensor], config: ViTConfig) -> dict[str, Tensor]:
    """vitlib's layout needs no conversion (``config`` is not needed)."""
    return dict(state)


def config_from_shapes(state: Mapping[str, Tensor]) -> dict[str, Any]:
    """The ``ViTConfig`` fields that a vitlib-layout state dict fixes by its shapes.

    Returns the architecture fields plus ``"_grid_tokens"`` (patch tokens in the position
    embedding), from which the image size follows once the grid's aspect is known, and
    ``"_has_layer_scale"`` (the initial LayerScale value is not in the weights).
    """
    patcher = _get(state, slots.PATCH.key("weight"), rank=4)
    dim, channels, patch_h, patch_w = patcher.shape
    class_token = slots.CLASS_TOKEN.key() in state
    registers = _get(state, slots.REGISTER_TOKENS.key(), rank=3, required=False)
    fc1 = _get(state, slots.FC1.key("weight"), rank=2)
    pre_logits = _get(state, slots.PRE_LOGITS.key("weight"), rank=2, required=False)
    head = _get(state, slots.HEAD.key("weight"), rank=2, required=False)
    position = _get(state, slots.POSITION.key(), rank=3)
    found: dict[str, Any] = {
        "embedding_dim": dim,
        "in_channels": channels,
        "patch_size": patch_h if patch_h == patch_w else (patch_h, patch_w),
        "num_transformer_layers": count_layers(state, slots.LAYER_PATTERN),
        "mlp_size": fc1.shape[0],
        "qkv_bias": slots.QKV.key("bias") in state,
        "class_token": class_token,
        "num_register_tokens": 0 if registers is None else registers.shape[1],
        "representation_size": None if pre_logits is None else pre_logits.shape[0],
        "num_classes": 0 if head is None else head.shape[0],
        "_has_layer_scale": slots.MSA_SCALE.key("gamma") in state,
        "_grid_tokens": position.shape[1] - int(class_token),
    }
    if not class_token:
        found["pool"] = "mean"
    return found


def square_image_size(grid_tokens: int, patch_size: int | tuple[int, int]) -> int | None:
    """The square image size whose patch grid has ``grid_tokens`` patches, if there is one."""
    side = math.isqrt(grid_tokens)
    if side * side != grid_tokens:
        return None
    patch_h, patch_w = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    return side * patch_h if patch_h == patch_w else None


def heads_from_presets(dim: int, depth: int, mlp_size: int) -> int | None:
    """``num_heads`` of the Table 1 size with this width, depth and MLP size, if any."""
    for size in SIZES.values():
        if (size.embedding_dim, size.num_transformer_layers, size.mlp_size) == (
            dim,
            depth,
            mlp_size,
        ):
            return size.num_heads
    return None


_SHAPES = {
    2: "(out_features, in_features)",
    3: "(1, tokens, embedding_dim)",
    4: "(embedding_dim, in_channels, patch_height, patch_width)",
}


@overload
def _get(state: Mapping[str, Tensor], key: str, *, rank: int) -> Tensor: ...


@overload
def _get(
    state: Mapping[str, Tensor], key: str, *, rank: int, required: Literal[False]
) -> Tensor | None: ...


def _get(
    state: Mapping[str, Tensor], key: str, *, rank: int, required: bool = True
) -> Tensor | None:
    """``state[key]`` with ``rank`` dimensions; a missing key is an error when ``required``."""
    if key not in state:
        if not required:
            return None
        raise CheckpointError(f"missing key {key!r}; the checkpoint is incomplete.")
    tensor = state[key]
    if tensor.ndim != rank:
        raise CheckpointError(
            f"{key} has shape {tuple(tensor.shape)}; expected {rank} dimensions {_SHAPES[rank]} "
            f"(in vitlib's names). The checkpoint is damaged or not a standard ViT."
        )
    return tensor


FAMILY: Final = Family(NAME, matches, to_vitlib, from_vitlib)
