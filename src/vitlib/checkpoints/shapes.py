"""What a state dict in vitlib's layout fixes by its tensors' shapes, and what they suggest."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import torch
from torch import Tensor

from vitlib.checkpoints import keys as slots
from vitlib.checkpoints.family import count_layers, require
from vitlib.config import SIZES
from vitlib.errors import CheckpointError

__all__ = ["ShapeFacts"]

_LAYOUTS: Final = {
    2: "(out_features, in_features)",
    3: "(1, tokens, embedding_dim)",
    4: "(embedding_dim, in_channels, patch_height, patch_width)",
}


@dataclass(frozen=True)
class ShapeFacts:
    """The ``ViTConfig`` fields a state dict in vitlib's layout fixes by its tensors.

    ``num_heads`` is not among them (the fused qkv weight is the same for any split into
    heads), nor the image size (the position embedding has ``grid_tokens`` patch positions,
    and a grid's aspect is not in its length), nor LayerScale's initial value (training moved
    the ``gamma`` weights away from it; ``gamma_mean`` is where they are now).

    Attributes:
        embedding_dim: Width ``D``, from the patch kernel.
        in_channels: Image channels, from the patch kernel.
        patch_size: Patch side, or ``(height, width)``, from the patch kernel.
        num_transformer_layers: Encoder depth, from the layer indices.
        mlp_size: MLP width, from layer 0's ``fc1``.
        qkv_bias: Whether layer 0's qkv has a bias.
        class_token: Whether there is a class token.
        num_register_tokens: Register tokens.
        representation_size: Pre-logits width, or None without that layer.
        num_classes: Head outputs; 0 without a head.
        gamma_mean: The mean absolute value of the LayerScale weights (``gamma``), as the
            shortest decimal of the float32 mean; None without LayerScale.
        grid_tokens: Patch positions in the position embedding.
    """

    embedding_dim: int
    in_channels: int
    patch_size: int | tuple[int, int]
    num_transformer_layers: int
    mlp_size: int
    qkv_bias: bool
    class_token: bool
    num_register_tokens: int
    representation_size: int | None
    num_classes: int
    gamma_mean: float | None
    grid_tokens: int

    @classmethod
    def read(cls, state: Mapping[str, Tensor], family: str) -> ShapeFacts:
        """Read the facts from ``state`` (converted from a checkpoint of ``family``).

        Raises:
            CheckpointError: A tensor the facts come from is missing or has the wrong number of
                dimensions.
        """
        dim, channels, patch_h, patch_w = _ranked(state, slots.PATCH.key("weight"), 4, family).shape
        class_token = slots.CLASS_TOKEN.key() in state
        registers = _optional(state, slots.REGISTER_TOKENS.key(), 3, family)
        fc1 = _ranked(state, slots.FC1.key("weight"), 2, family)
        pre_logits = _optional(state, slots.PRE_LOGITS.key("weight"), 2, family)
        head = _optional(state, slots.HEAD.key("weight"), 2, family)
        position = _ranked(state, slots.POSITION.key(), 3, family)
        return cls(
            embedding_dim=dim,
            in_channels=channels,
            patch_size=patch_h if patch_h == patch_w else (patch_h, patch_w),
            num_transformer_layers=count_layers(state, slots.LAYER_PATTERN),
            mlp_size=fc1.shape[0],
            qkv_bias=slots.QKV.key("bias") in state,
            class_token=class_token,
            num_register_tokens=0 if registers is None else registers.shape[1],
            representation_size=None if pre_logits is None else pre_logits.shape[0],
            num_classes=0 if head is None else head.shape[0],
            gamma_mean=_gamma_mean(state) if slots.MSA_SCALE.key("gamma") in state else None,
            grid_tokens=position.shape[1] - int(class_token),
        )

    def fields(self) -> dict[str, Any]:
        """The ``ViTConfig`` fields fixed here (and ``pool="mean"`` without a class token)."""
        fixed: dict[str, Any] = {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.name not in ("gamma_mean", "grid_tokens")
        }
        if not self.class_token:
            fixed["pool"] = "mean"
        return fixed

    @property
    def layer_scale(self) -> bool:
        """Whether the blocks have LayerScale weights."""
        return self.gamma_mean is not None

    def square_image_size(self) -> int | None:
        """The side of the square image whose patch grid has ``grid_tokens`` patches, if any."""
        side = math.isqrt(self.grid_tokens)
        if side * side != self.grid_tokens or not isinstance(self.patch_size, int):
            return None
        return side * self.patch_size

    def heads_from_presets(self) -> int | None:
        """``num_heads`` of the Table 1 size with this width, depth and MLP size, if any."""
        wanted = (self.embedding_dim, self.num_transformer_layers, self.mlp_size)
        for size in SIZES.values():
            if (size.embedding_dim, size.num_transformer_layers, size.mlp_size) == wanted:
                return size.num_heads
        return None


def _gamma_mean(state: Mapping[str, Tensor]) -> float:
    """The mean magnitude of the finite LayerScale weights (NaN if none is finite), computed in
    float64 and written as the shortest decimal of its float32, since the weights hold no more
    (so gammas still at ``layer_scale_init=0.1`` give back 0.1)."""
    gammas = [
        tensor.detach().double().abs().flatten()
        for key, tensor in state.items()
        if slots.MSA_SCALE.owns(key) or slots.MLP_SCALE.owns(key)
    ]
    values = torch.cat(gammas)
    mean = values[torch.isfinite(values)].mean().item()  # NaN when nothing is finite
    return float(str(np.float32(mean)))


def _ranked(state: Mapping[str, Tensor], key: str, rank: int, family: str) -> Tensor:
    """``state[key]``, which must be there and have ``rank`` dimensions."""
    tensor = require(state, key, family)
    if tensor.ndim != rank:
        raise CheckpointError(
            f"{key} has shape {tuple(tensor.shape)}; expected {rank} dimensions {_LAYOUTS[rank]} "
            f"(in vitlib's names). The checkpoint is damaged or not a standard ViT."
        )
    return tensor


def _optional(state: Mapping[str, Tensor], key: str, rank: int, family: str) -> Tensor | None:
    """``state[key]`` with ``rank`` dimensions, or None when it is absent."""
    return _ranked(state, key, rank, family) if key in state else None
