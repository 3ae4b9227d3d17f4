"""Eq. 2 without the residual: ``MSA(LN(z))``, multi-head self-attention after a layer norm."""

from __future__ import annotations

from typing import Literal, NamedTuple, overload

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.nn import functional as F

from vitlib._checks import (
    check_bool,
    check_heads,
    check_layer_norm_eps,
    check_positive_int,
    check_rate,
)

__all__ = ["MultiheadSelfAttentionBlock", "QueryKeyValue"]


class QueryKeyValue(NamedTuple):
    """The heads' queries, keys and values, each ``(B, heads, N, D / heads)``."""

    query: Tensor
    key: Tensor
    value: Tensor


class MultiheadSelfAttentionBlock(nn.Module):
    """Layer norm then multi-head self-attention (eq. 2, ``MSA(LN(z))``; Appendix A).

    One fused ``qkv`` projection ([`project`][vitlib.MultiheadSelfAttentionBlock.project]) feeds
    ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient kernels where
    available; [`attend`][vitlib.MultiheadSelfAttentionBlock.attend]). With
    ``need_weights=True`` the attention is computed explicitly so that the weights can be
    returned; both paths give the same output.

    Args:
        embedding_dim: Token width ``D``; divisible by ``num_heads``.
        num_heads: Number of heads ``k``; each has ``D / k`` dimensions.
        attn_dropout: Dropout on the attention weights, active only in training.
        qkv_bias: Whether the ``qkv`` projection has a bias.
        layer_norm_eps: Epsilon of the layer norm.

    Shape:
        ``(B, N, D) -> (B, N, D)``; weights, when requested, ``(B, num_heads, N, N)``.
    """

    def __init__(
        self,
        embedding_dim: int = 768,
        num_heads: int = 12,
        attn_dropout: float = 0.0,
        *,
        qkv_bias: bool = True,
        layer_norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        check_heads(
            check_positive_int("embedding_dim", embedding_dim),
            check_positive_int("num_heads", num_heads),
        )
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.attn_dropout = check_rate("attn_dropout", attn_dropout)
        self.scale = (embedding_dim // num_heads) ** -0.5
        self.layer_norm = nn.LayerNorm(embedding_dim, eps=check_layer_norm_eps(layer_norm_eps))
        self.qkv = nn.Linear(
            embedding_dim, 3 * embedding_dim, bias=check_bool("qkv_bias", qkv_bias)
        )
        self.out_proj = nn.Linear(embedding_dim, embedding_dim)

    @overload
    def forward(self, x: Tensor, need_weights: Literal[False] = ...) -> Tensor: ...

    @overload
    def forward(self, x: Tensor, need_weights: Literal[True]) -> tuple[Tensor, Tensor]: ...

    @overload
    def forward(self, x: Tensor, need_weights: bool) -> Tensor | tuple[Tensor, Tensor]: ...

    def forward(self, x: Tensor, need_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Attend over the tokens ``x`` ``(B, N, D)``; optionally also return the weights."""
        out, weights = self.attend(self.project(x), need_weights)
        return out if weights is None else (out, weights)

    def project(self, x: Tensor) -> QueryKeyValue:
        """``LN(z)``, then the fused projection split into the heads' queries, keys, values."""
        qkv = self.qkv(self.layer_norm(x))
        query, key, value = rearrange(
            qkv, "b n (three h d) -> three b h n d", three=3, h=self.num_heads
        )
        return QueryKeyValue(query, key, value)

    def attend(
        self, heads: QueryKeyValue, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """``softmax(Q K^T / sqrt(d)) V`` per head, heads joined, then the output projection;
        the weights too (``(B, heads, q, N)``) if asked for, else None.

        The queries may be fewer than the keys (``(B, heads, q, d)`` gives ``(B, q, D)``).
        """
        query, key, value = heads
        dropout = self.attn_dropout if self.training else 0.0
        weights = None
        if need_weights:
            weights = torch.softmax((query * self.scale) @ key.transpose(-2, -1), dim=-1)
            attended = F.dropout(weights, dropout, training=self.training) @ value
        else:
            attended = F.scaled_dot_product_attention(query, key, value, dropout_p=dropout)
        out: Tensor = self.out_proj(rearrange(attended, "b h n d -> b n (h d)"))
        return out, weights
