"""Eq. 3 without the residual: ``MLP(LN(z'))``, Linear-GELU-Dropout-Linear-Dropout."""

from __future__ import annotations

from torch import Tensor, nn

from vitlib._checks import check_layer_norm_eps, check_positive_int, check_rate

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
        rate = check_rate("dropout", dropout)
        self.layer_norm = nn.LayerNorm(embedding_dim, eps=check_layer_norm_eps(layer_norm_eps))
        self.fc1 = nn.Linear(embedding_dim, mlp_size)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(rate)
        self.fc2 = nn.Linear(mlp_size, embedding_dim)
        self.drop2 = nn.Dropout(rate)

    def forward(self, x: Tensor) -> Tensor:
        """Transform each token of ``x`` ``(B, N, D)`` independently."""
        hidden = self.drop1(self.act(self.fc1(self.layer_norm(x))))
        out: Tensor = self.drop2(self.fc2(hidden))
        return out
