"""Eq. 2 without the residual: ``MSA(LN(z))``, multi-head self-attention after a layer norm."""

from __future__ import annotations

from typing import Literal, overload

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.nn import functional as F

from .._validation import (
    check_bool,
    check_fits_in_memory,
    check_input_tensor,
    check_layer_norm_eps,
    check_positive_int,
    check_rate,
)
from ..errors import ConfigError, InputShapeError

__all__ = ["MultiheadSelfAttentionBlock"]


class MultiheadSelfAttentionBlock(nn.Module):
    """Layer norm then multi-head self-attention (eq. 2, ``MSA(LN(z))``; Appendix A).

    One fused ``qkv`` projection feeds ``torch.nn.functional.scaled_dot_product_attention``
    (flash / memory-efficient kernels where available). With ``need_weights=True`` the attention
    is computed explicitly so the weights can be returned; both paths give the same output.
    With ``num_queries=q`` only the first ``q`` tokens attend (to every token), so the output is
    ``(B, q, D)``: what [`ViT.forward`][vitlib.ViT.forward] asks of the last block, where only
    the class token's output is read.

    Args:
        embedding_dim: Token width ``D``; divisible by ``num_heads``.
        num_heads: Number of heads ``k``; each has ``D / k`` dimensions.
        attn_dropout: Dropout on the attention weights, active only in training.
        qkv_bias: Whether the ``qkv`` projection has a bias.
        layer_norm_eps: Epsilon of the layer norm.

    Shape:
        ``(B, N, D) -> (B, N, D)``; weights, when requested, ``(B, num_heads, N, N)``. With
        ``num_queries=q``: ``(B, q, D)`` and ``(B, num_heads, q, N)``.
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
        check_positive_int("embedding_dim", embedding_dim)
        check_positive_int("num_heads", num_heads)
        if embedding_dim % num_heads:
            raise ConfigError(
                f"embedding_dim {embedding_dim} is not divisible by num_heads {num_heads}; "
                f"each head needs embedding_dim / num_heads dimensions."
            )
        check_bool("qkv_bias", qkv_bias)
        check_layer_norm_eps(layer_norm_eps)
        check_fits_in_memory(
            f"MultiheadSelfAttentionBlock({embedding_dim}, {num_heads})",
            {"the qkv and output projections (4 x embedding_dim^2)": 4 * embedding_dim**2},
            fix="Use a smaller embedding_dim.",
        )
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.attn_dropout = check_rate("attn_dropout", attn_dropout)
        self.scale = (embedding_dim // num_heads) ** -0.5
        self.layer_norm = nn.LayerNorm(embedding_dim, eps=layer_norm_eps)
        self.qkv = nn.Linear(embedding_dim, 3 * embedding_dim, bias=qkv_bias)
        self.out_proj = nn.Linear(embedding_dim, embedding_dim)

    @overload
    def forward(
        self, x: Tensor, need_weights: Literal[False] = ..., *, num_queries: int | None = ...
    ) -> Tensor: ...

    @overload
    def forward(
        self, x: Tensor, need_weights: Literal[True], *, num_queries: int | None = ...
    ) -> tuple[Tensor, Tensor]: ...

    @overload
    def forward(
        self, x: Tensor, need_weights: bool, *, num_queries: int | None = ...
    ) -> Tensor | tuple[Tensor, Tensor]: ...

    def forward(
        self, x: Tensor, need_weights: bool = False, *, num_queries: int | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend over the tokens ``x`` ``(B, N, D)``; optionally also return the weights.

        ``num_queries``: compute the output of only the first ``num_queries`` tokens (every
        token is still a key and a value); ``None`` for all.
        """
        check_input_tensor("tokens", x, self.layer_norm.weight)
        if x.ndim != 3 or x.shape[-1] != self.embedding_dim:
            raise InputShapeError(
                f"expected tokens shaped (batch, tokens, {self.embedding_dim}), got "
                f"{tuple(x.shape)}; patch-embed images with PatchEmbedding first."
            )
        if num_queries is not None:
            _check_num_queries(num_queries, x.shape[1])
        qkv = self.qkv(self.layer_norm(x))
        query, key, value = rearrange(
            qkv, "b n (three h d) -> three b h n d", three=3, h=self.num_heads
        )
        if num_queries is not None:
            query = query[:, :, :num_queries]
        dropout = self.attn_dropout if self.training else 0.0
        if need_weights:
            weights = torch.softmax((query * self.scale) @ key.transpose(-2, -1), dim=-1)
            attended = F.dropout(weights, dropout, training=self.training) @ value
        else:
            attended = F.scaled_dot_product_attention(query, key, value, dropout_p=dropout)
        out = self.out_proj(rearrange(attended, "b h n d -> b n (h d)"))
        return (out, weights) if need_weights else out


def _check_num_queries(num_queries: object, num_tokens: int) -> int:
    """Return ``num_queries`` if it is an int from 1 to ``num_tokens``, else raise."""
    count = check_positive_int("num_queries", num_queries)
    if count > num_tokens:
        raise InputShapeError(
            f"num_queries={num_queries} asks for more outputs than the {num_tokens} tokens "
            f"given; pass at most {num_tokens}, or None for every token."
        )
    return count
