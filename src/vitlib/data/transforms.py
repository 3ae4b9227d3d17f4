"""Image transforms in plain torch (no torchvision): the building blocks of the two transforms of
`vitlib.data.preprocessing`. Every path from a PIL image to a tensor goes through
[`pil_to_tensor`][vitlib.data.transforms.pil_to_tensor].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor

from vitlib._checks import check_type
from vitlib._optional import missing_extra
from vitlib.errors import DataError

if TYPE_CHECKING:
    from PIL import Image

IMAGENET_MEAN: Final[tuple[float, float, float]] = (0.485, 0.456, 0.406)
"""Per-channel RGB mean of ImageNet-1k, for images scaled to [0, 1]."""
IMAGENET_STD: Final[tuple[float, float, float]] = (0.229, 0.224, 0.225)
"""Per-channel RGB standard deviation of ImageNet-1k, for images scaled to [0, 1]."""

SIXTEEN_BIT_MODES: Final = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
"""Pillow's 16-bit unsigned greyscale modes; ``pil_to_tensor`` divides them by 65535."""
HIGH_PRECISION_MODES: Final = SIXTEEN_BIT_MODES | {"I", "F"}
"""Greyscale Pillow modes with more than 8 bits, which ``pil_to_tensor`` reads without
converting to 8-bit RGB (that conversion clips every value above 255 to white)."""

_CROP_ATTEMPTS: Final = 10
# ITU-R 601-2 luma, the weights of Pillow's convert("L").
_LUMA: Final = (0.299, 0.587, 0.114)
_SIXTEEN_BIT_MAX: Final = 65535
#: The EXIF tag of the orientation, and its values that turn the image a quarter (swapping its
#: width and height).
EXIF_ORIENTATION_TAG: Final = 0x0112
QUARTER_TURNS: Final = frozenset({5, 6, 7, 8})
_TRANSPOSING_ORIENTATIONS: Final = frozenset(range(2, 9))


def pil_to_tensor(image: Image.Image) -> Tensor:
    """Convert a PIL image to an upright RGB float32 tensor in [0, 1].

    The image is first turned upright by its EXIF orientation tag. 16-bit greyscale (Pillow's
    ``"I;16*"`` and ``"I"`` modes) is divided by 65535, 32-bit float ``"F"`` is taken as already in
    [0, 1], every other mode is converted to 8-bit RGB and divided by 255; greyscale is repeated
    into three channels. Out-of-range ``"I"``/``"F"`` values raise instead of being clipped
    (docs/data.md has the table of modes).

    Args:
        image: Any PIL image.

    Returns:
        A tensor shaped (3, H, W), upright.

    Raises:
        ImportError: If Pillow is missing (``pip install "vitlib[data]"``).
        TypeError: If ``image`` is not a ``PIL.Image.Image``.
        DataError: (a ``ValueError``) If an ``"I"`` or ``"F"`` image is out of the range above.
    """
    upright = _upright(image)
    if upright.mode in HIGH_PRECISION_MODES:
        grey = torch.from_numpy(_high_precision_to_unit(upright))
        return repeat(grey, "h w -> c h w", c=3).contiguous()
    return _rgb8(upright).float().div_(255.0)


def pil_to_uint8(image: Image.Image) -> Tensor | None:
    """An 8-bit PIL image as an upright RGB uint8 tensor (3, H, W), the pixels
    [`pil_to_tensor`][vitlib.data.transforms.pil_to_tensor] divides by 255; None for the 16-bit
    and float modes, which only ``pil_to_tensor`` reads.

    Raises:
        ImportError: If Pillow is missing (``pip install "vitlib[data]"``).
        TypeError: If ``image`` is not a ``PIL.Image.Image``.
    """
    upright = _upright(image)
    return None if upright.mode in HIGH_PRECISION_MODES else _rgb8(upright)


def _upright(image: Image.Image) -> Image.Image:
    try:
        from PIL import Image
    except ImportError as error:
        raise missing_extra("Pillow", "data", "Converting a PIL image to a tensor") from error
    check_type("image", image, Image.Image, "a PIL.Image.Image (open the file with Image.open)")
    return apply_exif_orientation(image)


def _rgb8(image: Image.Image) -> Tensor:
    pixels = np.array(image.convert("RGB"), dtype=np.uint8)
    return rearrange(torch.from_numpy(pixels), "h w c -> c h w")


def apply_exif_orientation(image: Image.Image) -> Image.Image:
    """Turn an image upright by its EXIF orientation tag, once.

    With a tag of 2 to 8 this returns ``PIL.ImageOps.exif_transpose(image)``, a transposed copy
    whose tag is removed (so a second call returns it unchanged); otherwise ``image`` itself.

    Args:
        image: A PIL image.

    Returns:
        The upright image.
    """
    from PIL import ImageOps

    if image.getexif().get(EXIF_ORIENTATION_TAG, 1) not in _TRANSPOSING_ORIENTATIONS:
        return image
    upright = ImageOps.exif_transpose(image)
    return upright if upright is not None else image


def _high_precision_to_unit(image: Image.Image) -> npt.NDArray[np.float32]:
    """Scale a ``HIGH_PRECISION_MODES`` image to a float32 (H, W) array in [0, 1].

    The rules per mode are in ``pil_to_tensor``.
    """
    pixels = np.asarray(image)
    if image.mode == "F":
        values: npt.NDArray[np.float32] = pixels.astype(np.float32)
        if values.size and not np.isfinite(values).all():
            raise DataError(
                "a Pillow mode 'F' (32-bit float) image holds NaN or infinite values; vitlib reads "
                "float images as already in [0, 1]; replace the non-finite values and scale the "
                "image to [0, 1] first"
            )
        if values.size and (values.min() < 0.0 or values.max() > 1.0):
            raise DataError(
                f"a Pillow mode 'F' (32-bit float) image holds values from {values.min():g} to "
                f"{values.max():g}; vitlib reads float images as already in [0, 1] and does not "
                "clip them; scale the image to [0, 1] first, e.g. "
                "Image.fromarray((array / array.max()).astype('float32'))"
            )
        return values
    if image.mode == "I" and pixels.size and (pixels.min() < 0 or pixels.max() > _SIXTEEN_BIT_MAX):
        raise DataError(
            f"a Pillow mode 'I' (32-bit integer) image holds values from {pixels.min()} to "
            f"{pixels.max()}; vitlib reads mode 'I' as 16-bit, 0 to {_SIXTEEN_BIT_MAX}; scale "
            "the image into that range, or to a mode 'F' image in [0, 1], first"
        )
    scaled: npt.NDArray[np.float32] = pixels.astype(np.float32) / np.float32(_SIXTEEN_BIT_MAX)
    return scaled


def normalize(image: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Subtract ``mean`` and divide by ``std`` per channel of a (C, H, W) tensor."""
    mean_t = torch.tensor(mean, dtype=image.dtype).view(-1, 1, 1)
    std_t = torch.tensor(std, dtype=image.dtype).view(-1, 1, 1)
    return (image - mean_t) / std_t


#: PyTorch's uint8 antialiased bilinear kernel is off by up to 50 of 255 (or fails) for outputs
#: one pixel wide (torch 2.13, checked on 9,000 random sizes); from two pixels on it is within
#: one step of the float kernel.
_UINT8_MIN_WIDTH: Final = 2


def resize(image: Tensor, size: tuple[int, int], mode: str = "bilinear") -> Tensor:
    """Resize a (C, H, W) float tensor in [0, 1] to ``size`` = (height, width).

    ``mode`` is ``"bilinear"`` or ``"bicubic"`` (both antialiased, bicubic clamped to [0, 1]
    since it overshoots) or ``"nearest-exact"``.

    A uint8 tensor (0-255) with ``"bilinear"`` is resized as uint8 and returned as float in
    [0, 1]: the same filter, four times faster on a camera photo, each pixel within one step of
    255 of the float result (the rounding to uint8). Other modes, and outputs one pixel wide,
    take the float path: PyTorch's uint8 bicubic is another filter, and its uint8 kernel is
    wrong (up to 50 steps) or fails for a width of one.
    """
    if image.dtype == torch.uint8:
        if mode != "bilinear" or size[1] < _UINT8_MIN_WIDTH:
            return resize(image.float().div_(255.0), size, mode)
        batch = F.interpolate(
            image[None], size=size, mode=mode, align_corners=False, antialias=True
        )
        return batch[0].float().div_(255.0)
    if mode == "nearest-exact":
        return F.interpolate(image[None], size=size, mode=mode)[0]
    batch = F.interpolate(image[None], size=size, mode=mode, align_corners=False, antialias=True)
    return batch[0].clamp(0.0, 1.0) if mode == "bicubic" else batch[0]


def to_channels(pixels: Tensor, channels: int) -> Tensor:
    """A (1 or 3, H, W) image as ``channels`` channels: grey by ITU-R 601-2 luma (Pillow's
    ``convert("L")``), or grey repeated into RGB."""
    if channels == 1 and pixels.shape[0] == 3:
        luma = torch.tensor(_LUMA, dtype=pixels.dtype).view(3, 1, 1)
        return (pixels * luma).sum(dim=0, keepdim=True)
    if channels == 3 and pixels.shape[0] == 1:
        return pixels.expand(3, -1, -1)
    return pixels


def random_resized_crop_box(
    height: int,
    width: int,
    *,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """Sample a RandomResizedCrop box, the standard algorithm (Szegedy et al., 2015; torchvision).

    Up to 10 attempts draw an area fraction uniformly from ``scale`` and an aspect ratio
    log-uniformly from ``ratio``; the first box that fits is placed uniformly at random. If none
    fits, the box is the largest centred one whose aspect ratio lies within ``ratio``.

    Returns:
        (top, left, crop_height, crop_width).
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(_CROP_ATTEMPTS):
        target_area = area * uniform(scale[0], scale[1], generator)
        aspect = math.exp(uniform(log_ratio[0], log_ratio[1], generator))
        crop_width = round(math.sqrt(target_area * aspect))
        crop_height = round(math.sqrt(target_area / aspect))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            top = _randint(height - crop_height + 1, generator)
            left = _randint(width - crop_width + 1, generator)
            return top, left, crop_height, crop_width
    image_ratio = width / height
    if image_ratio < ratio[0]:
        crop_width, crop_height = width, round(width / ratio[0])
    elif image_ratio > ratio[1]:
        crop_width, crop_height = round(height * ratio[1]), height
    else:
        crop_width, crop_height = width, height
    return (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width


def uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    """One draw from ``U(low, high)`` (``generator``, or torch's global RNG)."""
    return float(torch.empty(1).uniform_(low, high, generator=generator).item())


def _randint(high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(0, high, (1,), generator=generator).item())
