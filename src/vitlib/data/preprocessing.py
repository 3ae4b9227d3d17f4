"""`Preprocessing`: how a model's input images are made, saved with the model in ``config.json``.

A trained model expects its images prepared exactly as its test images were: the same size,
channels, resize and crop rule, interpolation and normalisation. ``Preprocessing`` records those
choices as data (Hugging Face keeps them in ``preprocessor_config.json``, timm in
``pretrained_cfg``) and [`transform`][vitlib.data.Preprocessing.transform] turns them back into
the transform, so [`vitlib.predict`][vitlib.predict] prepares a photo as the test set was.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from vitlib.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize, pil_to_tensor
from vitlib.errors import DataError

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["Interpolation", "PreprocessTransform", "Preprocessing", "ResizeRule"]

ResizeRule = Literal["center_crop", "squash"]
"""``"center_crop"``: resize the shorter side to ``image_size / crop_ratio`` and cut the centre
square (the evaluation transform of torchvision and timm); ``"squash"``: resize straight to
``image_size`` without keeping the aspect ratio (Hugging Face's ``ViTImageProcessor``)."""
Interpolation = Literal["bilinear", "bicubic", "nearest-exact"]
"""The resampling filter; bilinear and bicubic are antialiased when shrinking."""

_RESIZE_RULES: Final = get_args(ResizeRule)
_INTERPOLATIONS: Final = get_args(Interpolation)
# ITU-R 601-2 luma, the weights of Pillow's convert("L").
_LUMA: Final = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Preprocessing:
    """The preparation of a model's input images: size, channels, resize rule, normalisation.

    Attributes:
        image_size: ``(height, width)`` of the model's input.
        channels: 3 (RGB) or 1 (grey, by ITU-R 601-2 luma).
        mean: Per-channel mean subtracted from pixels scaled to [0, 1].
        std: Per-channel standard deviation divided by.
        resize: ``"center_crop"`` or ``"squash"`` (see ``ResizeRule``).
        crop_ratio: With ``"center_crop"``: the fraction of the resized shorter side kept, in
            (0, 1]; 0.875 is the standard 256 -> 224. Ignored by ``"squash"`` (kept at 1.0).
        interpolation: ``"bilinear"``, ``"bicubic"`` or ``"nearest-exact"``.

    Raises:
        DataError: A field is out of range (the message names it and the valid values).
    """

    image_size: tuple[int, int]
    channels: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    resize: ResizeRule = "center_crop"
    crop_ratio: float = 0.875
    interpolation: Interpolation = "bilinear"

    def __post_init__(self) -> None:
        size: object = self.image_size
        if isinstance(size, int) and not isinstance(size, bool):
            size = (size, size)
        if (
            not isinstance(size, (tuple, list))
            or len(size) != 2
            or not all(isinstance(side, int) and not isinstance(side, bool) for side in size)
            or min(size) < 1
        ):
            raise DataError(
                f"Preprocessing image_size={self.image_size!r} is invalid; expected an int >= 1 "
                "or a (height, width) pair of them, e.g. 224."
            )
        object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise DataError(
                f"Preprocessing channels={self.channels!r} is not supported; expected 3 (RGB) or "
                "1 (grey)."
            )
        for name in ("mean", "std"):
            values = _floats(name, getattr(self, name))
            if len(values) != self.channels:
                raise DataError(
                    f"Preprocessing {name}={values} has {len(values)} value(s) for "
                    f"{self.channels} channel(s); expected one per channel."
                )
            object.__setattr__(self, name, values)
        if not all(value > 0 for value in self.std):
            raise DataError(f"Preprocessing std={self.std} must be > 0 in every channel.")
        if self.resize not in _RESIZE_RULES:
            raise DataError(
                f"Preprocessing resize={self.resize!r} is unknown; expected one of "
                f"{', '.join(map(repr, _RESIZE_RULES))}."
            )
        if self.interpolation not in _INTERPOLATIONS:
            raise DataError(
                f"Preprocessing interpolation={self.interpolation!r} is unknown; expected one of "
                f"{', '.join(map(repr, _INTERPOLATIONS))}."
            )
        ratio = self.crop_ratio
        if (
            isinstance(ratio, bool)
            or not isinstance(ratio, (int, float))
            or not math.isfinite(ratio)
            or not 0.0 < ratio <= 1.0
        ):
            raise DataError(
                f"Preprocessing crop_ratio={ratio!r} is out of range; expected a number in "
                "(0, 1], e.g. 0.875 (256 -> 224) or 1.0 (no border cut)."
            )
        object.__setattr__(self, "crop_ratio", float(ratio))

    @classmethod
    def imagenet(cls, image_size: int | tuple[int, int] = 224) -> Preprocessing:
        """RGB, ImageNet mean and std, shorter side to ``image_size / 0.875``, centre crop:
        what ``vitlib.data.eval_transform`` does, and what most pretrained ViTs expect."""
        size = (image_size, image_size) if isinstance(image_size, int) else image_size
        return cls(image_size=size)

    def transform(self) -> PreprocessTransform:
        """The transform from a ``PIL.Image.Image`` to the model's input tensor (C, H, W).

        For RGB, ``"center_crop"`` and ``"bilinear"`` it computes exactly what
        [`eval_transform`][vitlib.data.eval_transform] does with the same size, ratio, mean and
        std (the test set of ``vitlib train`` and ``vitlib finetune``).
        """
        return PreprocessTransform(self)

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
            DataError: Unknown or missing keys, or invalid values.
        """
        if not isinstance(data, Mapping):
            raise DataError(f"preprocessing must be a JSON object, got {type(data).__name__}.")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown or "image_size" not in data:
            raise DataError(
                f"preprocessing has unknown keys {unknown} or lacks 'image_size'; expected "
                f"image_size and some of {sorted(known - {'image_size'})}."
            )
        values = dict(data)
        values["image_size"] = _size(values["image_size"])
        for name in ("mean", "std"):
            if name in values:
                values[name] = _floats(name, values[name])
        return cls(**values)


def _size(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _floats(name: str, values: Any) -> tuple[float, ...]:
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = (values,)
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise DataError(
            f"Preprocessing {name}={values!r} is invalid; expected a number per channel."
        )
    floats: list[float] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DataError(
                f"Preprocessing {name}={values!r} holds {value!r}; expected finite numbers."
            )
        if not math.isfinite(value):
            raise DataError(f"Preprocessing {name}={values!r} holds a non-finite value.")
        floats.append(float(value))
    return tuple(floats)


@dataclass(frozen=True)
class PreprocessTransform:
    """The callable of [`Preprocessing.transform`][vitlib.data.Preprocessing.transform] (a
    frozen dataclass, so that it pickles into DataLoader workers)."""

    preprocessing: Preprocessing

    def __call__(self, image: Image.Image) -> Tensor:
        """Prepare one PIL image: a float32 tensor (channels, height, width)."""
        return self.from_pixels(pil_to_tensor(image))

    def from_pixels(self, pixels: Tensor) -> Tensor:
        """Prepare an image already scaled to [0, 1], float (3, H, W) or (1, H, W)."""
        spec = self.preprocessing
        if spec.channels == 1 and pixels.shape[0] == 3:
            luma = torch.tensor(_LUMA, dtype=pixels.dtype).view(3, 1, 1)
            pixels = (pixels * luma).sum(dim=0, keepdim=True)
        elif spec.channels == 3 and pixels.shape[0] == 1:
            pixels = pixels.expand(3, -1, -1)
        height, width = spec.image_size
        if spec.resize == "squash":
            return normalize(self._resize(pixels, (height, width)), spec.mean, spec.std)
        # As EvalTransform: the shorter side to floor(side / ratio), never below the side.
        short_target = max(min(height, width), math.floor(min(height, width) / spec.crop_ratio))
        source_height, source_width = pixels.shape[1], pixels.shape[2]
        if source_height <= source_width:
            new_height = short_target
            new_width = max(width, int(short_target * source_width / source_height))
        else:
            new_width = short_target
            new_height = max(height, int(short_target * source_height / source_width))
        resized = self._resize(pixels, (new_height, new_width))
        top, left = (new_height - height) // 2, (new_width - width) // 2
        crop = resized[:, top : top + height, left : left + width]
        return normalize(crop, spec.mean, spec.std)

    def _resize(self, pixels: Tensor, size: tuple[int, int]) -> Tensor:
        mode = self.preprocessing.interpolation
        if mode == "nearest-exact":
            return F.interpolate(pixels[None], size=size, mode=mode)[0]
        resized = F.interpolate(
            pixels[None], size=size, mode=mode, align_corners=False, antialias=True
        )[0]
        return resized.clamp(0.0, 1.0) if mode == "bicubic" else resized
