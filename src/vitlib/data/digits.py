"""scikit-learn's 8x8 handwritten digits as a small, offline image-classification dataset."""

from __future__ import annotations

import math
from typing import Final, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from vitlib._checks import check_bool, check_choice, check_int
from vitlib._optional import missing_extra
from vitlib.data.preprocessing import Preprocessing
from vitlib.errors import DataError

DIGITS_MEAN: Final = 0.30513582
"""Mean pixel of the digits train split, pixels scaled to [0, 1] (computed, pinned by a test)."""
DIGITS_STD: Final = 0.37615756
"""Standard deviation (population) of the digits train split's pixels, scaled to [0, 1]."""

DIGITS_TRAIN_SIZE: Final = 1442
DIGITS_TEST_SIZE: Final = 355

_TEST_EVERY: Final = 5
_MAX_PIXEL: Final = 16.0
_SOURCE_SIZE: Final = 8
_MAX_DEGREES: Final = 10.0
_MAX_SHIFT_SOURCE_PIXELS: Final = 1.0
_SCALE_RANGE: Final = (0.9, 1.1)


class DigitsDataset(Dataset[tuple[Tensor, int]]):
    """The 1,797 8x8 handwritten digits of ``sklearn.datasets.load_digits`` (UCI optdigits).

    The split is fixed and stratified (every 5th image of each class is a test image: 1,442 train,
    355 test). Each item is ``(image, label)``, ``image`` float32 (1, image_size, image_size):
    pixels scaled to [0, 1], enlarged with ``nearest-exact`` and normalised by ``DIGITS_MEAN`` and
    ``DIGITS_STD``. ``augment=True`` adds a light random affine (rotation, shift, scale) drawn
    from torch's global RNG. docs/data.md gives the class counts and the exact augmentation.

    Args:
        split: ``"train"`` or ``"test"``.
        image_size: Side of the square output, >= 8; default 16 (2x).
        augment: Random affine augmentation; only allowed for the train split.

    Raises:
        ImportError: If scikit-learn is missing (``pip install "vitlib[data]"``).
        DataError: (a ``ValueError``) On an unknown split, ``image_size < 8`` or
            ``augment=True`` for the test split.

    Examples:
        >>> train = DigitsDataset("train", image_size=16, augment=True)
        >>> image, label = train[0]
        >>> image.shape, len(train), train.classes[label]
        (torch.Size([1, 16, 16]), 1442, '0')
    """

    classes: list[str]
    targets: list[int]
    images: Tensor
    """The split's source images in [0, 1], float32 (N, 1, 8, 8), enlarged per item on access."""

    def __init__(
        self,
        split: Literal["train", "test"] = "train",
        *,
        image_size: int = 16,
        augment: bool = False,
    ) -> None:
        check_choice("split", split, ("train", "test"))
        check_int(
            "image_size",
            image_size,
            minimum=_SOURCE_SIZE,
            fix="the digits are 8x8; use 16 (the default) or another multiple of 8",
        )
        check_bool("augment", augment)
        if augment and split != "train":
            raise DataError(
                "augment=True is for the train split only, got split='test'; "
                "evaluate on un-augmented images (augment=False)"
            )
        pixels, labels = _load_split(split)
        self.images = pixels.unsqueeze(1) / _MAX_PIXEL
        self.targets = labels.tolist()
        self.classes = [str(digit) for digit in range(10)]
        self.split = split
        self.image_size = image_size
        self.augment = augment

    def __len__(self) -> int:
        """Number of images in the split."""
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        """Return ``(image, label)``: normalised float32 (1, image_size, image_size) and an int."""
        # Enlarging per item keeps memory at 8x8 per image (image_size=224 would need 290 MB).
        size = (self.image_size, self.image_size)
        image = F.interpolate(self.images[index][None], size=size, mode="nearest-exact")[0]
        if self.augment:
            image = random_affine(image)
        return (image - DIGITS_MEAN) / DIGITS_STD, self.targets[index]


def random_affine(image: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Apply a random small rotation (+-10 degrees), shift (+-1/8 of the side per axis) and scale
    (0.9-1.1), each uniform, to a (C, H, W) image with background 0.

    Args:
        image: Float tensor (C, H, W), background 0.
        generator: Optional RNG; torch's global RNG if ``None``.

    Returns:
        A tensor of the same shape and dtype.
    """
    draws = torch.rand(4, generator=generator)
    angle = math.radians(_MAX_DEGREES * (2.0 * float(draws[0]) - 1.0))
    scale = _SCALE_RANGE[0] + (_SCALE_RANGE[1] - _SCALE_RANGE[0]) * float(draws[1])
    # affine_grid coordinates span [-1, 1], so one source pixel of the 8-pixel side is 2 / 8.
    max_shift = 2.0 * _MAX_SHIFT_SOURCE_PIXELS / _SOURCE_SIZE
    shift_x, shift_y = (max_shift * (2.0 * float(draw) - 1.0) for draw in draws[2:])
    # The grid maps output coordinates to input ones, hence the inverse scale.
    cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
    theta = torch.tensor([[[cos, -sin, shift_x], [sin, cos, shift_y]]], dtype=image.dtype)
    grid = F.affine_grid(theta, [1, *image.shape], align_corners=False)
    warped = F.grid_sample(
        image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )
    return warped[0]


def _load_split(split: Literal["train", "test"]) -> tuple[Tensor, Tensor]:
    """Return (pixels float32 (N, 8, 8) in 0..16, labels int64 (N,)) of one split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise missing_extra("scikit-learn", "data", "DigitsDataset") from error
    bunch = load_digits()
    pixels = torch.as_tensor(bunch.images, dtype=torch.float32)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    is_test = torch.zeros(len(labels), dtype=torch.bool)
    for digit in range(10):
        members = torch.nonzero(labels == digit).flatten()
        is_test[members[_TEST_EVERY - 1 :: _TEST_EVERY]] = True
    keep = is_test if split == "test" else ~is_test
    return pixels[keep], labels[keep]


def digits_preprocessing(image_size: int) -> Preprocessing:
    """How ``DigitsDataset`` makes its images, for photos of digits: grey, squashed to the size
    (nearest-exact, as the 8x8 digits are enlarged), normalised by the digits' statistics."""
    return Preprocessing(
        (image_size, image_size),
        channels=1,
        mean=(DIGITS_MEAN,),
        std=(DIGITS_STD,),
        resize="squash",
        crop_ratio=1.0,
        interpolation="nearest-exact",
    )
