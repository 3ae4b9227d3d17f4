"""Eq. 1, ``x_p E``: cut the image into patches and project each one to ``D`` dimensions."""

from __future__ import annotations

from einops import rearrange
from torch import Tensor, nn

from vitlib._checks import check_positive_int, to_pair

__all__ = ["PatchEmbedding"]


class PatchEmbedding(nn.Module):
    """Split an image into ``P x P`` patches and embed each linearly (eq. 1, ``x_p E``).

    A convolution with kernel and stride ``P`` is exactly the per-patch linear map ``E``.

    Args:
        in_channels: Image channels ``C``.
        patch_size: Patch side ``P``, or ``(height, width)`` for rectangular patches.
        embedding_dim: Output width ``D``.

    Shape:
        ``(B, C, H, W) -> (B, N, D)`` with ``N = (H / P_h) * (W / P_w)``, rows first.
    """

    def __init__(
        self,
        in_channels: int = 3,
        patch_size: int | tuple[int, int] = 16,
        embedding_dim: int = 768,
    ) -> None:
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.patch_size = to_pair("patch_size", patch_size)
        check_positive_int("embedding_dim", embedding_dim)
        self.patcher = nn.Conv2d(
            in_channels, embedding_dim, kernel_size=self.patch_size, stride=self.patch_size
        )

    def forward(self, images: Tensor) -> Tensor:
        """Embed ``images`` ``(B, C, H, W)`` into patch tokens ``(B, N, D)``."""
        projected: Tensor = self.patcher(images)
        return rearrange(projected, "b d rows cols -> b (rows cols) d")

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Patches per column and per row for an image of ``height x width``."""
        return height // self.patch_size[0], width // self.patch_size[1]
