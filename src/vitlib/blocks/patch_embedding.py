"""Eq. 1, ``x_p E``: cut the image into patches and project each one to ``D`` dimensions."""

from __future__ import annotations

from einops import rearrange
from torch import Tensor, nn

from .._validation import check_fits_in_memory, check_input_tensor, check_positive_int, to_pair
from ..errors import InputShapeError

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
        check_fits_in_memory(
            f"PatchEmbedding({in_channels}, {patch_size}, {embedding_dim})",
            {
                "the patch kernel (in_channels x patch_size^2 x embedding_dim)": (
                    in_channels * self.patch_size[0] * self.patch_size[1] * embedding_dim
                )
            },
            fix="Use a smaller patch_size or embedding_dim.",
        )
        self.patcher = nn.Conv2d(
            in_channels, embedding_dim, kernel_size=self.patch_size, stride=self.patch_size
        )

    def forward(self, images: Tensor) -> Tensor:
        """Embed ``images`` ``(B, C, H, W)`` into patch tokens ``(B, N, D)``."""
        self.check_input(images)
        projected: Tensor = self.patcher(images)
        return rearrange(projected, "b d rows cols -> b (rows cols) d")

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Patches per column and per row for an image of ``height x width``."""
        return height // self.patch_size[0], width // self.patch_size[1]

    def check_input(self, images: Tensor) -> None:
        """Raise unless ``images`` fits this embedding.

        Raises:
            InputTypeError: ``images`` is not a tensor, or its dtype or device differs from the
                weights'.
            InputShapeError: Wrong rank, channel count, or a size not divisible by the patch.
        """
        check_input_tensor("images", images, self.patcher.weight)
        if images.ndim != 4:
            raise InputShapeError(
                f"expected images shaped (batch, channels, height, width), got a "
                f"{images.ndim}-d tensor of shape {tuple(images.shape)}; "
                f"add a batch dimension with images.unsqueeze(0) for a single image."
            )
        channels, height, width = images.shape[1:]
        if channels != self.in_channels:
            raise InputShapeError(
                f"expected {self.in_channels} input channels, got {channels} "
                f"(images of shape {tuple(images.shape)}); convert the images or build the "
                f"model with in_channels={channels}."
            )
        patch_h, patch_w = self.patch_size
        if height % patch_h or width % patch_w:
            raise InputShapeError(
                f"image size {height}x{width} is not divisible by the patch size "
                f"{patch_h}x{patch_w}; resize or crop to a multiple of the patch size."
            )
