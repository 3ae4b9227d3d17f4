"""Resample learnable position embeddings to another patch grid (Sec. 3.2, "Fine-tuning and
higher resolution": 2D interpolation of the pre-trained position embeddings)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor
from torch.nn import functional as F

from vitlib._checks import to_pair
from vitlib.errors import InputShapeError

__all__ = ["resample_position_embedding"]


def resample_position_embedding(
    position_embedding: Tensor,
    old_grid: tuple[int, int],
    new_grid: tuple[int, int],
    *,
    num_prefix_tokens: int = 1,
    mode: str = "bicubic",
    antialias: bool = True,
) -> Tensor:
    """Resample ``(1, prefix + rows * cols, D)`` position embeddings to a new grid.

    The prefix tokens' embeddings (the class token's) are kept apart and unchanged; the grid part
    is interpolated in 2D, so non-square source and target grids both work. Computed in float32
    and returned in the input's dtype.

    Args:
        position_embedding: ``(1, num_prefix_tokens + old_rows * old_cols, D)``.
        old_grid: ``(rows, cols)`` the embeddings were trained for.
        new_grid: ``(rows, cols)`` wanted.
        num_prefix_tokens: Leading embeddings that are not on the grid.
        mode: ``torch.nn.functional.interpolate`` mode (bicubic as in timm and big_vision).
        antialias: Anti-alias when shrinking (as timm does).

    Returns:
        ``(1, num_prefix_tokens + new_rows * new_cols, D)``.
    """
    old_grid, new_grid = to_pair("old_grid", old_grid), to_pair("new_grid", new_grid)
    if position_embedding.ndim != 3 or position_embedding.shape[0] != 1:
        raise InputShapeError(
            "position_embedding must be shaped (1, tokens, dim), got "
            f"{tuple(position_embedding.shape)}."
        )
    expected = num_prefix_tokens + old_grid[0] * old_grid[1]
    if position_embedding.shape[1] != expected:
        raise InputShapeError(
            f"position_embedding has {position_embedding.shape[1]} tokens, but old_grid "
            f"{old_grid[0]}x{old_grid[1]} with {num_prefix_tokens} prefix token(s) needs "
            f"{expected}; pass the grid the embeddings were trained for."
        )
    if tuple(old_grid) == tuple(new_grid):
        return position_embedding
    prefix = position_embedding[:, :num_prefix_tokens]
    grid = rearrange(
        position_embedding[:, num_prefix_tokens:].float(),
        "one (rows cols) dim -> one dim rows cols",
        rows=old_grid[0],
    )
    use_antialias = antialias and mode in ("bilinear", "bicubic")
    grid = F.interpolate(
        grid, size=new_grid, mode=mode, align_corners=False, antialias=use_antialias
    )
    grid = rearrange(grid, "one dim rows cols -> one (rows cols) dim").to(position_embedding.dtype)
    return torch.cat([prefix, grid], dim=1)
