"""`Preprocessing`: how a model's input images are made, saved with the model in ``config.json``.

``Preprocessing`` records as data how a model's test images were prepared (size, channels,
resize and crop rule, interpolation, normalisation), and
[`transform`][vitlib.data.Preprocessing.transform] turns it back into the one evaluation
transform; [`train_transform`][vitlib.data.train_transform] is its training twin. docs/data.md
says more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

import torch
from torch import Tensor

from vitlib._checks import (
    check_choice,
    check_int,
    check_names,
    check_number,
    check_range,
    check_sequence,
    check_type,
    to_pair,
)
from vitlib.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    normalize,
    pil_to_tensor,
    pil_to_uint8,
    random_resized_crop_box,
    resize,
    to_channels,
    uniform,
)
from vitlib.errors import ConfigError

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "IMAGENET_CROP_ASPECT",
    "IMAGENET_CROP_SCALE",
    "MIN_CROP_RATIO",
    "Interpolation",
    "PreprocessTransform",
    "Preprocessing",
    "ResizeRule",
    "TrainTransform",
    "train_transform",
]

ResizeRule = Literal["center_crop", "squash"]
"""``"center_crop"``: resize, keeping the aspect ratio, until the image covers
``image_size / crop_ratio``, then cut the centre (the evaluation transform of torchvision and
timm); ``"squash"``: resize straight to ``image_size`` without keeping the aspect ratio (Hugging
Face's ``ViTImageProcessor``)."""
Interpolation = Literal["bilinear", "bicubic", "nearest-exact"]
"""The resampling filter; bilinear and bicubic are antialiased when shrinking."""

_RESIZE_RULES: Final[tuple[ResizeRule, ...]] = get_args(ResizeRule)
# The range of each mean and std: normalised pixels stay finite and informative in float32 (a
# std of 1e-300 is 0 in float32, one of 1e300 maps every image to 0).
_BOUNDS: Final = {"mean": (-1e3, 1e3), "std": (1e-3, 1e3)}
_INTERPOLATIONS: Final[tuple[Interpolation, ...]] = get_args(Interpolation)
#: The smallest ``crop_ratio``: the crop keeps at least a tenth of the resized image's side (a
#: ratio near 0 would resize every photo to an enormous image first).
MIN_CROP_RATIO: Final = 0.1
#: RandomResizedCrop's ranges in ImageNet training (Inception's): crops of 8-100% of the image's
#: area, aspect ratios (width / height) 3/4-4/3.
IMAGENET_CROP_SCALE: Final = (0.08, 1.0)
IMAGENET_CROP_ASPECT: Final = (3 / 4, 4 / 3)


@dataclass(frozen=True)
class Preprocessing:
    """The preparation of a model's input images: size, channels, resize rule, normalisation.

    Attributes:
        image_size: ``(height, width)`` of the model's input (an int for a square).
        channels: 3 (RGB) or 1 (grey, by ITU-R 601-2 luma).
        mean: Per-channel mean subtracted from pixels scaled to [0, 1].
        std: Per-channel standard deviation divided by.
        resize: ``"center_crop"`` or ``"squash"`` (see ``ResizeRule``).
        crop_ratio: With ``"center_crop"``: the fraction of the resized image kept, in
            [0.1, 1];
            0.875 is the standard 256 -> 224. Ignored by ``"squash"``.
        interpolation: ``"bilinear"``, ``"bicubic"`` or ``"nearest-exact"``.

    Raises:
        ConfigError: A field is out of range (the message names it and the valid values).
        InputTypeError: A field has the wrong type.
    """

    image_size: tuple[int, int]
    channels: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    resize: ResizeRule = "center_crop"
    crop_ratio: float = 0.875
    interpolation: Interpolation = "bilinear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", to_pair("image_size", self.image_size))
        if check_int("channels", self.channels, minimum=1, maximum=3) == 2:
            raise ConfigError("channels must be 1 (grey) or 3 (RGB), got 2.")
        for name, (low, high) in _BOUNDS.items():
            values = _per_channel(name, getattr(self, name), self.channels, low, high)
            object.__setattr__(self, name, values)
        check_choice("resize", self.resize, _RESIZE_RULES)
        check_choice("interpolation", self.interpolation, _INTERPOLATIONS)
        ratio = check_number(
            "crop_ratio",
            self.crop_ratio,
            low=MIN_CROP_RATIO,
            high=1.0,
            fix="e.g. 0.875 (256 -> 224) or 1.0 (no border cut)",
        )
        object.__setattr__(self, "crop_ratio", ratio)

    @classmethod
    def imagenet(cls, image_size: int | tuple[int, int] = 224) -> Preprocessing:
        """RGB, ImageNet mean and std, resized to cover ``image_size / 0.875``, centre crop:
        the evaluation transform of most pretrained ViTs."""
        return cls(image_size=to_pair("image_size", image_size))

    def transform(self) -> PreprocessTransform:
        """The transform from a ``PIL.Image.Image`` to the model's input tensor (C, H, W)."""
        return PreprocessTransform(self)

    def resize_target(self, source: tuple[int, int]) -> tuple[int, int]:
        """The ``(height, width)`` an image of ``source`` size (height, width) is resized to
        before any crop: ``image_size`` when squashed, the covering size for ``"center_crop"``.

        An image decoded at a reduced scale that stays at least this large is resized exactly
        as the full image would be, up to the decoder's own filtering: what
        [`open_image`][vitlib.data.image_folder.open_image] asks a JPEG decoder for.
        """
        if self.resize == "squash":
            return self.image_size
        return cover_size(source, self.image_size, self.crop_ratio)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON values (tuples as lists), as ``config.json`` stores them."""
        data = asdict(self)
        for name in ("image_size", "mean", "std"):
            data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """Rebuild from `to_dict` output.

        Raises:
            InputTypeError: Not a mapping, or unknown keys.
            ConfigError: ``image_size`` is missing, or a value is invalid.
        """
        check_type("preprocessing", data, Mapping, "a JSON object of Preprocessing fields")
        known = list(cls.__dataclass_fields__)
        check_names(data, known, "preprocessing", "field")
        if "image_size" not in data:
            raise ConfigError(f"preprocessing lacks 'image_size'; expected it and some of {known}.")
        values = dict(data)
        for name in ("image_size", "mean", "std"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        return cls(**values)


def _per_channel(
    name: str, values: object, channels: int, low: float, high: float
) -> tuple[float, ...]:
    """One number in ``[low, high]`` per channel, as floats."""
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = (values,)
    given = check_sequence(name, values, f"{channels} number(s), one per channel")
    if len(given) != channels:
        raise ConfigError(
            f"{name} must be {channels} number(s), one per channel, got {len(given)}: {values!r}."
        )
    return tuple(
        check_number(
            f"each of {name}",
            value,
            low=low,
            high=high,
            fix="pixels are scaled to [0, 1] before the mean is subtracted and the std divides",
        )
        for value in given
    )


def _pixels(image: Image.Image, spec: Preprocessing) -> Tensor:
    """``image``'s pixels as the transforms start from them: uint8 RGB (3, H, W) for an 8-bit
    image and an RGB ``spec`` (resized before they become float), else float in [0, 1]."""
    eight_bit = pil_to_uint8(image) if spec.channels == 3 else None
    return eight_bit if eight_bit is not None else pil_to_tensor(image)


def _prepare(pixels: Tensor, spec: Preprocessing, size: tuple[int, int]) -> Tensor:
    """The part every transform ends with: ``spec``'s channels, resized to ``size`` with its
    filter, normalised with its mean and std (uint8 RGB pixels resized as uint8, see `resize`)."""
    if pixels.dtype == torch.uint8 and pixels.shape[0] != spec.channels:
        pixels = pixels.float().div_(255.0)
    resized = resize(to_channels(pixels, spec.channels), size, spec.interpolation)
    return normalize(resized, spec.mean, spec.std)


@dataclass(frozen=True)
class PreprocessTransform:
    """The callable of [`Preprocessing.transform`][vitlib.data.Preprocessing.transform] (a
    frozen dataclass, so that it pickles into DataLoader workers)."""

    preprocessing: Preprocessing

    def __call__(self, image: Image.Image) -> Tensor:
        """Prepare one PIL image: a float32 tensor (channels, height, width).

        An 8-bit RGB image is resized before it becomes float (`resize`'s uint8 path, with
        ``"bilinear"``), four times faster than converting first, within one step of 255.
        """
        return self.from_pixels(_pixels(image, self.preprocessing))

    def from_pixels(self, pixels: Tensor) -> Tensor:
        """Prepare an image already scaled to [0, 1], float (3, H, W) or (1, H, W), or uint8
        RGB (3, H, W) in 0-255."""
        spec = self.preprocessing
        if spec.resize == "squash":
            return _prepare(pixels, spec, spec.image_size)
        height, width = pixels.shape[1], pixels.shape[2]
        covered = cover_size((height, width), spec.image_size, spec.crop_ratio)
        top = (covered[0] - spec.image_size[0]) // 2
        left = (covered[1] - spec.image_size[1]) // 2
        resized = _prepare(pixels, spec, covered)
        return resized[:, top : top + spec.image_size[0], left : left + spec.image_size[1]]


def cover_size(source: tuple[int, int], target: tuple[int, int], ratio: float) -> tuple[int, int]:
    """The size to resize ``source`` to, keeping its aspect ratio, so that a centre crop of
    ``target`` keeps ``ratio`` of it along the side that binds.

    The binding side becomes ``floor(side / ratio)``, the other follows the aspect ratio (rounded
    down), neither below the target: for a square target torchvision's and timm's rule (256 for
    224 at 0.875).
    """
    (height, width), (target_h, target_w) = source, target
    if target_h * width >= target_w * height:  # the height needs the larger scale
        new_height = max(target_h, math.floor(target_h / ratio))
        return new_height, max(target_w, int(new_height * width / height))
    new_width = max(target_w, math.floor(target_w / ratio))
    return max(target_h, int(new_width * height / width)), new_width


@dataclass(frozen=True)
class TrainTransform:
    """RandomResizedCrop + random horizontal flip, then ``preprocessing``'s channels, size and
    normalisation; built by [`train_transform`][vitlib.data.train_transform]."""

    preprocessing: Preprocessing
    scale: tuple[float, float]
    ratio: tuple[float, float]
    generator: torch.Generator | None = None

    def __call__(self, image: Image.Image) -> Tensor:
        """Transform one image into a normalised float32 tensor (C, H, W)."""
        pixels = _pixels(image, self.preprocessing)
        top, left, crop_height, crop_width = random_resized_crop_box(
            pixels.shape[1],
            pixels.shape[2],
            scale=self.scale,
            ratio=self.ratio,
            generator=self.generator,
        )
        crop = pixels[:, top : top + crop_height, left : left + crop_width]
        prepared = _prepare(crop, self.preprocessing, self.preprocessing.image_size)
        return prepared.flip(-1) if uniform(0.0, 1.0, self.generator) < 0.5 else prepared


def train_transform(
    image_size: int | tuple[int, int] | Preprocessing,
    *,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    scale: tuple[float, float] = IMAGENET_CROP_SCALE,
    ratio: tuple[float, float] = IMAGENET_CROP_ASPECT,
    generator: torch.Generator | None = None,
) -> TrainTransform:
    """The training transform: RandomResizedCrop, random horizontal flip, to tensor, normalise.

    Randomness comes from ``generator`` if given, else from torch's global RNG (reproducible by
    ``torch.manual_seed``); pass ``generator`` in a single process only, or every DataLoader
    worker repeats the same crops.

    Args:
        image_size: Side of the square output, ``(height, width)``, or the
            [`Preprocessing`][vitlib.data.Preprocessing] of the test images (its size, channels,
            filter, mean and std are used; ``mean`` and ``std`` are then ignored).
        mean: Per-channel mean subtracted after scaling to [0, 1] (one value: grey images).
        std: Per-channel standard deviation divided by.
        scale: Range of the crop area as a fraction of the image area.
        ratio: Range of the crop aspect ratio (width / height), sampled log-uniformly.
        generator: Optional RNG for the crop and the flip.

    Returns:
        A callable mapping a ``PIL.Image.Image`` to a float32 tensor (C, height, width).

    Examples:
        >>> from PIL import Image
        >>> transform = train_transform(32, generator=torch.Generator().manual_seed(0))
        >>> transform(Image.new("RGB", (50, 40))).shape
        torch.Size([3, 32, 32])
    """
    if isinstance(image_size, Preprocessing):
        spec = image_size
    else:
        channels = len(check_sequence("mean", mean, "one number per channel"))
        spec = Preprocessing(to_pair("image_size", image_size), channels, tuple(mean), tuple(std))
    return TrainTransform(
        spec,
        check_range("scale", scale, upper=1.0),
        check_range("ratio", ratio, upper=math.inf),
        generator,
    )
