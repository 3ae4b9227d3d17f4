"""Optional residual-branch modules: stochastic depth and LayerScale (identity when off)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vitlib._checks import (
    MAX_LAYER_SCALE_INIT,
    check_layer_scale_init,
    check_number,
    check_positive_int,
    check_rate,
)

__all__ = ["DropPath", "LayerScale", "drop_path_or_identity", "layer_scale_or_identity"]


class DropPath(nn.Module):
    """Stochastic depth (Huang et al., 2016): drop a whole residual branch per sample in training.

    Kept samples are scaled by ``1 / (1 - rate)`` so the expected output is unchanged.
    """

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = check_rate("drop_path", rate)

    def forward(self, x: Tensor) -> Tensor:
        """Zero the branch ``x`` ``(B, ...)`` for a random subset of samples while training."""
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask_shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = torch.empty(mask_shape, dtype=x.dtype, device=x.device).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


class LayerScale(nn.Module):
    """Per-channel learnable scale of a residual branch (Touvron et al., 2021, CaiT)."""

    def __init__(self, embedding_dim: int, init_value: float) -> None:
        super().__init__()
        check_positive_int("embedding_dim", embedding_dim)
        scale = check_number(
            "init_value", init_value, low=0.0, high=MAX_LAYER_SCALE_INIT, low_open=True
        )
        self.gamma = nn.Parameter(torch.full((embedding_dim,), scale))

    def forward(self, x: Tensor) -> Tensor:
        """Scale the last dimension of ``x`` by ``gamma``."""
        return x * self.gamma


def drop_path_or_identity(rate: float) -> nn.Module:
    """``DropPath(rate)``, or ``nn.Identity`` when ``rate`` is 0 so ``forward`` has no branch."""
    return DropPath(rate) if check_rate("drop_path", rate) > 0 else nn.Identity()


def layer_scale_or_identity(embedding_dim: int, init_value: float | None) -> nn.Module:
    """``LayerScale``, or ``nn.Identity`` when ``init_value`` is None."""
    scale = check_layer_scale_init(init_value)
    return nn.Identity() if scale is None else LayerScale(embedding_dim, scale)
