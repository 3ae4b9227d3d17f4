"""Eq. 2 and 3 with their residuals: one Transformer encoder layer."""

from __future__ import annotations

from torch import Tensor, nn

from vitlib.blocks.attention import MultiheadSelfAttentionBlock
from vitlib.blocks.mlp import MLPBlock
from vitlib.blocks.regularization import drop_path_or_identity, layer_scale_or_identity

__all__ = ["TransformerEncoderBlock"]


class TransformerEncoderBlock(nn.Module):
    """``z' = MSA(LN(z)) + z`` (eq. 2), then ``z = MLP(LN(z')) + z'`` (eq. 3).

    Stochastic depth (``drop_path``) and LayerScale (``layer_scale_init``) are off by default;
    when off they are ``nn.Identity`` so ``forward`` is the same two lines either way.

    Args:
        embedding_dim: Token width ``D``.
        num_heads: Attention heads.
        mlp_size: Hidden width of the MLP.
        mlp_dropout: Dropout inside the MLP.
        attn_dropout: Dropout on the attention weights.
        drop_path: Probability of skipping each residual branch per sample in training.
        layer_scale_init: Initial LayerScale value, or None for no LayerScale.
        qkv_bias: Whether the attention's ``qkv`` projection has a bias.
        layer_norm_eps: Epsilon of both layer norms.

    Shape:
        ``(B, N, D) -> (B, N, D)``.
    """

    def __init__(
        self,
        embedding_dim: int = 768,
        num_heads: int = 12,
        mlp_size: int = 3072,
        mlp_dropout: float = 0.1,
        attn_dropout: float = 0.0,
        *,
        drop_path: float = 0.0,
        layer_scale_init: float | None = None,
        qkv_bias: bool = True,
        layer_norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.msa_block = MultiheadSelfAttentionBlock(
            embedding_dim, num_heads, attn_dropout, qkv_bias=qkv_bias, layer_norm_eps=layer_norm_eps
        )
        self.mlp_block = MLPBlock(
            embedding_dim, mlp_size, mlp_dropout, layer_norm_eps=layer_norm_eps
        )
        self.msa_scale = layer_scale_or_identity(embedding_dim, layer_scale_init)
        self.mlp_scale = layer_scale_or_identity(embedding_dim, layer_scale_init)
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        """Apply one encoder layer to ``x`` ``(B, N, D)``."""
        x = x + self.drop_path(self.msa_scale(self.msa_block(x)))  # eq. 2
        out: Tensor = x + self.drop_path(self.mlp_scale(self.mlp_block(x)))  # eq. 3
        return out
