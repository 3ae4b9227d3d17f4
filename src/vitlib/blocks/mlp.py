"""Eq. 3 without the residual: ``MLP(LN(z'))``, Linear-GELU-Dropout-Linear-Dropout."""

from __future__ import annotations

from torch import Tensor, nn

from .._validation import (
    check_fits_in_memory,
    check_layer_norm_eps,
    check_positive_int,
    check_rate,
)

__all__ = ["MLPBlock"]


class MLPBlock(nn.Module):
    """Layer norm then the two-layer GELU MLP (eq. 3, ``MLP(LN(z'))``; Sec. 3.1, Appendix B.1).

    Args:
        embedding_dim: Token width ``D``.
        mlp_size: Hidden width (``4 D`` in Table 1).
        dropout: Dropout after each dense layer, active only in training.
        layer_norm_eps: Epsilon of the layer norm.

    Shape:
        ``(B, N, D) -> (B, N, D)``.
    """

    def __init__(
        self,
        embedding_dim: int = 768,
        mlp_size: int = 3072,
        dropout: float = 0.1,
        *,
        layer_norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        check_positive_int("embedding_dim", embedding_dim)
        check_positive_int("mlp_size", mlp_size)
        check_rate("dropout", dropout)
        check_layer_norm_eps(layer_norm_eps)
        check_fits_in_memory(
            f"MLPBlock({embedding_dim}, {mlp_size})",
            {"the two dense layers (2 x embedding_dim x mlp_size)": 2 * embedding_dim * mlp_size},
            fix="Use a smaller embedding_dim or mlp_size.",
        )
        self.layer_norm = nn.LayerNorm(embedding_dim, eps=layer_norm_eps)
        self.fc1 = nn.Linear(embedding_dim, mlp_size)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(mlp_size, embedding_dim)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Transform each token of ``x`` ``(B, N, D)`` independently."""
        hidden = self.drop1(self.act(self.fc1(self.layer_norm(x))))
        out: Tensor = self.drop2(self.fc2(hidden))
        return out
