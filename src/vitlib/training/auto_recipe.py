"""A training recipe chosen from what a small image folder looks like.

`vitlib train --data FOLDER` does not know the folder in advance; these rules pick what the
paper's ImageNet recipe (224 px, 16-px patches, 12 layers) gets wrong for a few hundred photos
on a CPU. [`read_folder_stats`][vitlib.training.auto_recipe.read_folder_stats] reads what is
cheap to know (classes, images per class, image sizes from the file headers of a sample, no
pixels decoded); [`choose_recipe`][vitlib.training.auto_recipe.choose_recipe] turns that into a
[`FolderRecipe`][vitlib.training.auto_recipe.FolderRecipe]: the input size, the model and its
patch size, the optimiser steps, warmup, batch size, learning rate, the training augmentation
and the evaluation resize, each overridable by the caller, with a one-line explanation to print.

The rules of `choose_recipe`, in order (docs/training.md shows the benchmark behind them):

1. **Input size**: the median of the images' shorter sides, rounded down to a multiple of 16
   and kept within 32-128 px: fine detail is kept while the cost stays that of a small
   grid. With a preset but no size: the preset's
   patch size times the grid nearest that size within `GRID_RANGE`.
2. **Model**: ViT-Ti with 6 encoder blocks, its patch size cutting the input into an 8x8
   grid (the grid in `GRID_RANGE` nearest 8 that divides a given size); a given preset
   keeps its size and patch, a given ``layers`` its depth (a preset's own depth if only the
   preset is given).
3. **Batch size**: the largest of 8, 16, 32, 64 that gives at least 8 steps an epoch (never
   above the training images).
4. **Length**: about 1,000 optimiser steps, as 10 to 100 epochs; then at most
   `MAX_TRAINING_FLOPS` of training, fewer epochs (or ``max_steps`` within the first
   epoch) where the data or the model is large. A given ``epochs`` is kept as it is.
5. **Warmup**: a tenth of the steps; **learning rate**: 1e-3 (AdamW).
6. **Augmentation**: crops of 35-100% of the image (ImageNet's 8% cuts small objects out),
   aspect ratios 3/4-4/3 widened to the middle 90% of the images' own, so a crop may be the
   whole image; random horizontal flips (`train_transform` always flips).
7. **Evaluation**: ``"squash"``, the whole image resized to the input size, as the widest
   training crops are; a centre crop would cut off objects near the edges.

The module is pure: it reads image headers, never trains and never writes a file. The numbers
behind each rule are in ``benchmarks/folder_recipe.py`` and docs/training.md.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

from vitlib._checks import (
    check_choice,
    check_int,
    check_number,
    check_range,
    check_sequence,
    check_type,
)
from vitlib._optional import missing_extra
from vitlib.config import SIZES, ViTConfig, parse_preset_name
from vitlib.counting import count_flops
from vitlib.data.preprocessing import (
    IMAGENET_CROP_ASPECT,
    MIN_CROP_RATIO,
    Preprocessing,
    ResizeRule,
    TrainTransform,
    train_transform,
)
from vitlib.data.transforms import (
    EXIF_ORIENTATION_TAG,
    IMAGENET_MEAN,
    IMAGENET_STD,
    QUARTER_TURNS,
)
from vitlib.errors import ConfigError, DataError

__all__ = [
    "GRID_RANGE",
    "MAX_TRAINING_FLOPS",
    "FolderRecipe",
    "FolderStats",
    "choose_recipe",
    "read_folder_stats",
]

#: The side of the token grid (image size / patch size) the rules choose between, inclusive:
#: 8x8 = 64 tokens learns on a few hundred images; 4x4 (ViT-Ti/16 at 64 px) loses up to 26
#: points on the benchmark's kinds (docs/training.md), larger grids cost quadratically more.
GRID_RANGE: Final = (8, 16)
#: The grid chosen when nothing constrains it: the cheapest in `GRID_RANGE`.
TARGET_GRID: Final = 8
#: The chosen input size lies in this range (pixels), a multiple of `SIZE_STEP`. With the grid
#: fixed, a larger input costs little (only the patch embedding grows) and keeps fine detail:
#: 128 px instead of 64 lifted the benchmark's textures from 37% to 52% (docs/training.md).
IMAGE_SIZE_RANGE: Final = (32, 128)
#: Chosen input sizes are multiples of this, so that an 8x8 grid has an even patch size.
SIZE_STEP: Final = 16
#: The input size follows this quantile of the images' shorter sides, the median: half the
#: images are shrunk, half enlarged (a little: never above `IMAGE_SIZE_RANGE`).
SIZE_QUANTILE: Final = 0.5
#: The model size (a `vitlib.config.SIZES` key) and its depth when the caller names no preset.
DEFAULT_SIZE: Final = "Ti"
DEFAULT_LAYERS: Final = 6
#: Optimiser steps aimed for, within `EPOCH_RANGE`, before the compute bound: on the
#: benchmark's folders accuracy was still rising at 600 (textures: 32% after 26 epochs, 52%
#: after 40; docs/training.md).
TARGET_STEPS: Final = 1000
EPOCH_RANGE: Final = (10, 100)
#: Batch sizes chosen between: the largest that still gives `MIN_STEPS_PER_EPOCH` steps.
BATCH_SIZES: Final = (8, 16, 32, 64)
MIN_STEPS_PER_EPOCH: Final = 8
#: Training FLOPs of a run (3x the forward FLOPs per image seen) are bounded by this: 24 TFLOP
#: took about 4 minutes on the 2-core development VM with PyTorch held to AVX2 kernels (12 TFLOP
#: in 2 minutes, ~100 GFLOP/s); 10 minutes leaves room for a machine 2.5 times slower
#: (docs/training.md).
MAX_TRAINING_FLOPS: Final = 24e12
#: Warmup, as a fraction of the optimiser steps.
WARMUP_FRACTION: Final = 0.1
#: Peak AdamW learning rate at every chosen batch size.
DEFAULT_LR: Final = 1e-3
#: RandomResizedCrop's area range: at least a third of the image, so that a crop keeps most of
#: the object (ImageNet's 8% cuts a small object out of many crops).
DEFAULT_CROP_SCALE: Final = (0.35, 1.0)
#: RandomResizedCrop's aspect-ratio range before the data widens it (ImageNet's).
BASE_CROP_ASPECT: Final = IMAGENET_CROP_ASPECT
#: Image headers read by `read_folder_stats` at most, spread over the classes.
MAX_HEADERS: Final = 256

_RESIZE_RULES: Final[tuple[ResizeRule, ...]] = ("center_crop", "squash")
_BACKWARD_FACTOR: Final = 3  # a training step costs about 3 forward passes


@dataclass(frozen=True)
class FolderStats:
    """What the rules know about a training folder.

    Attributes:
        num_classes: Classes of the data set (>= 1).
        images_per_class: Training images of each class (>= 0 each, >= 1 in all).
        image_sizes: ``(width, height)`` of a sample of the training images, upright (>= 1).

    Raises:
        InputTypeError: A field has the wrong type.
        ConfigError: A field is out of range, or ``images_per_class`` does not have one count
            per class.
    """

    num_classes: int
    images_per_class: tuple[int, ...]
    image_sizes: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        check_int("num_classes", self.num_classes, minimum=1)
        counts = check_sequence("images_per_class", self.images_per_class, "one count per class")
        if len(counts) != self.num_classes:
            raise ConfigError(
                f"images_per_class must hold one count per class ({self.num_classes}), got "
                f"{len(counts)}: {tuple(counts)!r}; count the images of every class, 0 included."
            )
        checked = tuple(check_int("each of images_per_class", n, minimum=0) for n in counts)
        if sum(checked) == 0:
            raise ConfigError("images_per_class must count at least one image, got only zeros.")
        sizes = check_sequence("image_sizes", self.image_sizes, "(width, height) pairs")
        if not sizes:
            raise ConfigError(
                "image_sizes must hold at least one (width, height) pair, got none; read them "
                "with read_folder_stats."
            )
        object.__setattr__(self, "images_per_class", checked)
        object.__setattr__(self, "image_sizes", tuple(_size_pair(pair) for pair in sizes))

    @property
    def train_images(self) -> int:
        """All training images."""
        return sum(self.images_per_class)

    def shorter_side(self, quantile: float) -> int:
        """The ``quantile`` (in [0, 1]) of the images' shorter sides, in pixels."""
        return round(_quantile([min(pair) for pair in self.image_sizes], quantile))

    def aspect(self, quantile: float) -> float:
        """The ``quantile`` (in [0, 1]) of the images' aspect ratios (width / height)."""
        return _quantile([width / height for width, height in self.image_sizes], quantile)


def _size_pair(pair: object) -> tuple[int, int]:
    values = check_sequence("each of image_sizes", pair, "a (width, height) pair")
    if len(values) != 2:
        raise ConfigError(f"each of image_sizes must be a (width, height) pair, got {pair!r}.")
    return (
        check_int("an image width", values[0], minimum=1),
        check_int("an image height", values[1], minimum=1),
    )


def _quantile(values: Sequence[float], quantile: float) -> float:
    """Linear-interpolation quantile of a non-empty sequence."""
    ordered = sorted(values)
    position = quantile * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def read_folder_stats(
    samples: Sequence[tuple[str | os.PathLike[str], int]],
    num_classes: int,
    *,
    max_headers: int = MAX_HEADERS,
) -> FolderStats:
    """Count the images per class and read the sizes of a sample of them from their headers.

    The sample is ``max_headers`` images evenly spaced through ``samples`` (all of them if
    fewer), so every class of a class-sorted list is in it; only the headers are read (Pillow's
    lazy ``Image.open``), and the EXIF orientation swaps width and height where it turns the
    image a quarter. Files that are not regular files or whose header Pillow cannot read are
    left out of the sample (the data set reports them when it loads them).

    Args:
        samples: ``(path, label)`` pairs, e.g. an
            [`ImageFolderDataset`][vitlib.data.ImageFolderDataset]'s ``samples`` (after a
            validation split, the training part only).
        num_classes: The data set's classes; labels lie in ``[0, num_classes)``.
        max_headers: Headers read at most (>= 1).

    Returns:
        The folder's `FolderStats`.

    Raises:
        MissingExtraError: Pillow is not installed (``pip install "vitlib[data]"``).
        InputTypeError: An argument has the wrong type.
        ConfigError: ``num_classes`` or ``max_headers`` is below 1.
        DataError: ``samples`` is empty, a label is outside ``[0, num_classes)``, or no header
            of the sample could be read.
    """
    check_int("num_classes", num_classes, minimum=1)
    check_int("max_headers", max_headers, minimum=1)
    pairs = check_sequence("samples", samples, "a sequence of (path, label) pairs")
    if not pairs:
        raise DataError("samples is empty; expected the (path, label) pairs of the training set.")
    counts = [0] * num_classes
    paths: list[str | os.PathLike[str]] = []
    for pair in pairs:
        path, label = _sample(pair)
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < num_classes:
            raise DataError(
                f"the sample {path} has label {label!r}; expected an int in [0, {num_classes}). "
                "Pass num_classes=len(dataset.classes)."
            )
        counts[label] += 1
        paths.append(path)
    taken = min(max_headers, len(paths))
    chosen = [paths[index * len(paths) // taken] for index in range(taken)]
    sizes = [size for size in map(_header_size, chosen) if size is not None]
    if not sizes:
        raise DataError(
            f"none of the {taken} images sampled (e.g. {chosen[0]}) has a header Pillow can "
            "read; check that the folder holds images."
        )
    return FolderStats(num_classes, tuple(counts), tuple(sizes))


def _sample(pair: object) -> tuple[str | os.PathLike[str], object]:
    """``(path, label)`` of one of ``samples``."""
    values = check_sequence("each of samples", pair, "a (path, label) pair")
    path = values[0] if len(values) == 2 else None
    if not isinstance(path, (str, os.PathLike)):
        raise DataError(f"each of samples must be a (path, label) pair, got {pair!r}.")
    return path, values[1]


def _header_size(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """``(width, height)`` of an image, upright, from its header; ``None`` if unreadable."""
    try:
        from PIL import Image
    except ImportError as error:
        raise missing_extra("Pillow", "data", "Reading image sizes") from error
    if not Path(path).is_file():  # a FIFO or a device would block the read
        return None
    try:
        with Image.open(path) as image:
            width, height = image.size
            turned = image.getexif().get(EXIF_ORIENTATION_TAG, 1) in QUARTER_TURNS
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    return (height, width) if turned else (width, height)


@dataclass(frozen=True)
class FolderRecipe:
    """The training recipe `choose_recipe` picked for a folder (read the fields, do not build).

    Attributes:
        image_size: Side of the square model input, in pixels.
        preset: The model preset, e.g. ``"ViT-Ti/8"``; its patch size divides ``image_size``.
        layers: Encoder blocks (``num_transformer_layers``).
        epochs: Passes over the training images.
        batch_size: Images per optimiser step.
        steps_per_epoch: Optimiser steps per epoch (``ceil(train_images / batch_size)``).
        max_steps: Stop after this many optimiser steps (``None``: every epoch to its end);
            set only when one epoch alone is over the compute bound.
        warmup_steps: Linear warmup, in optimiser steps.
        lr: Peak AdamW learning rate.
        crop_scale: RandomResizedCrop's range of the crop area, as a fraction of the image.
        crop_aspect: RandomResizedCrop's range of the crop aspect ratio (width / height).
        resize: How test images are made square: ``"squash"`` or ``"center_crop"``.
        crop_ratio: With ``"center_crop"``, the fraction of the resized image kept.
        explanation: One line saying what was chosen and why, for the command to print.
        given: The names of the fields the caller fixed.
    """

    image_size: int
    preset: str
    layers: int
    epochs: int
    batch_size: int
    steps_per_epoch: int
    max_steps: int | None
    warmup_steps: int
    lr: float
    crop_scale: tuple[float, float]
    crop_aspect: tuple[float, float]
    resize: ResizeRule
    crop_ratio: float
    explanation: str = ""
    given: frozenset[str] = field(default_factory=frozenset)

    @property
    def patch_size(self) -> int:
        """The preset's patch size, in pixels."""
        return parse_preset_name(self.preset)[1]

    @property
    def grid(self) -> int:
        """Patches along each side of the input."""
        return self.image_size // self.patch_size

    @property
    def total_steps(self) -> int:
        """Optimiser steps of the whole run."""
        steps = self.epochs * self.steps_per_epoch
        return steps if self.max_steps is None else min(steps, self.max_steps)

    def config(self, num_classes: int, in_channels: int = 3) -> ViTConfig:
        """The model's config: the preset at ``image_size`` with ``layers`` blocks."""
        return ViTConfig.from_preset(
            self.preset,
            img_size=self.image_size,
            num_transformer_layers=self.layers,
            num_classes=num_classes,
            in_channels=in_channels,
        )

    def training_flops(self, train_images: int) -> int:
        """About the FLOPs of the whole run: 3 forward passes per training image seen."""
        images = min(self.epochs * train_images, self.total_steps * self.batch_size)
        return _BACKWARD_FACTOR * count_flops(self.config(num_classes=2)) * images

    def preprocessing(
        self,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> Preprocessing:
        """How test images are made: ``image_size``, ``resize`` and ``crop_ratio``, normalised by
        ``mean`` and ``std`` (one value per channel; one for grey)."""
        return Preprocessing(
            (self.image_size, self.image_size),
            channels=len(mean),
            mean=tuple(mean),
            std=tuple(std),
            resize=self.resize,
            crop_ratio=self.crop_ratio,
        )

    def train_transform(self, preprocessing: Preprocessing | None = None) -> TrainTransform:
        """The training transform: crops of ``crop_scale`` and ``crop_aspect``, random flips,
        then the channels, size and normalisation of ``preprocessing`` (default
        `preprocessing()`)."""
        spec = preprocessing if preprocessing is not None else self.preprocessing()
        return train_transform(spec, scale=self.crop_scale, ratio=self.crop_aspect)


def choose_recipe(
    stats: FolderStats,
    *,
    image_size: int | None = None,
    preset: str | None = None,
    layers: int | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    max_steps: int | None = None,
    warmup_steps: int | None = None,
    lr: float | None = None,
    crop_scale: tuple[float, float] | None = None,
    crop_aspect: tuple[float, float] | None = None,
    resize: ResizeRule | None = None,
    crop_ratio: float | None = None,
) -> FolderRecipe:
    """Choose a recipe for training from scratch on a folder; every argument but ``stats``
    fixes one choice (``None``: choose it), and the others follow from it.

    The rules are the module's (above), in order.

    Args:
        stats: What the training folder looks like (`read_folder_stats`).
        image_size: Side of the square input, in pixels.
        preset: A preset name; its patch size is kept (``"ViT-S/16"``).
        layers: Encoder blocks.
        epochs: Passes over the training images.
        batch_size: Images per optimiser step.
        max_steps: Stop after this many optimiser steps.
        warmup_steps: Linear warmup steps.
        lr: Peak learning rate.
        crop_scale: ``(low, high)`` area fraction of the training crops, in (0, 1].
        crop_aspect: ``(low, high)`` aspect ratio of the training crops.
        resize: ``"squash"`` or ``"center_crop"`` for the test images.
        crop_ratio: The centre crop's share of the resized image, in [0.1, 1].

    Returns:
        The `FolderRecipe`, whose ``explanation`` names every choice and marks the given ones.

    Raises:
        InputTypeError: An argument has the wrong type.
        ConfigError: A value is out of range, a given preset's patch size does not divide the
            given image size, or no grid in `GRID_RANGE` divides a given image size.
    """
    check_type("stats", stats, FolderStats, "a FolderStats (from read_folder_stats)")
    given = _given(
        image_size=image_size,
        preset=preset,
        layers=layers,
        epochs=epochs,
        batch_size=batch_size,
        max_steps=max_steps,
        warmup_steps=warmup_steps,
        lr=lr,
        crop_scale=crop_scale,
        crop_aspect=crop_aspect,
        resize=resize,
        crop_ratio=crop_ratio,
    )
    size, chosen_preset, depth = _model(stats, image_size, preset, layers)
    batch = _batch_size(stats, batch_size)
    steps_per_epoch = math.ceil(stats.train_images / batch)
    draft = FolderRecipe(
        image_size=size,
        preset=chosen_preset,
        layers=depth,
        epochs=1,
        batch_size=batch,
        steps_per_epoch=steps_per_epoch,
        max_steps=None,
        warmup_steps=0,
        lr=DEFAULT_LR if lr is None else check_number("lr", lr, low=0.0, low_open=True),
        crop_scale=_pair("crop_scale", crop_scale, upper=1.0) or DEFAULT_CROP_SCALE,
        crop_aspect=_pair("crop_aspect", crop_aspect, upper=math.inf) or _crop_aspect(stats),
        resize="squash" if resize is None else check_choice("resize", resize, _RESIZE_RULES),
        crop_ratio=1.0 if crop_ratio is None else _crop_ratio(crop_ratio),
    )
    length = _length(draft, stats, epochs, max_steps)
    total = length.total_steps
    warmup = (
        max(1, round(WARMUP_FRACTION * total))
        if warmup_steps is None
        else check_int("warmup_steps", warmup_steps, minimum=0)
    )
    recipe = replace(length, warmup_steps=warmup, given=given)
    return replace(recipe, explanation=explain(recipe, stats))


def _given(**choices: object) -> frozenset[str]:
    """The names of the choices the caller fixed (not ``None``)."""
    return frozenset(name for name, value in choices.items() if value is not None)


def _model(
    stats: FolderStats, image_size: int | None, preset: str | None, layers: int | None
) -> tuple[int, str, int]:
    """Rules 1 and 2: ``(image_size, preset, layers)``."""
    natural = _natural_size(stats)
    if preset is not None:
        size_key, patch, _ = parse_preset_name(preset)
        if image_size is None:
            grid = min(max(round(natural / patch), GRID_RANGE[0]), GRID_RANGE[1])
            image_size = grid * patch
        else:
            check_int("image_size", image_size, minimum=1)
            if image_size % patch:
                raise ConfigError(
                    f"image_size {image_size} is not divisible by the patch size {patch} of "
                    f"preset {preset!r}; give an image size that is a multiple of {patch} "
                    f"(e.g. {max(patch, image_size // patch * patch)}), or leave it out to "
                    "have one chosen."
                )
        depth = SIZES[size_key].num_transformer_layers if layers is None else layers
    else:
        size_key = DEFAULT_SIZE
        if image_size is None:
            image_size = natural
        check_int("image_size", image_size, minimum=1)
        patch = image_size // _grid_for(image_size)
        depth = DEFAULT_LAYERS if layers is None else layers
    check_int("layers", depth, minimum=1)
    return image_size, f"ViT-{size_key}/{patch}", depth


def _natural_size(stats: FolderStats) -> int:
    """Rule 1 without a preset: the quantile of the shorter sides, in steps of 16, in range."""
    low, high = IMAGE_SIZE_RANGE
    side = stats.shorter_side(SIZE_QUANTILE) // SIZE_STEP * SIZE_STEP
    return min(max(side, low), high)


def _grid_for(image_size: int) -> int:
    """The grid in `GRID_RANGE` nearest `TARGET_GRID` that divides ``image_size``."""
    grids = [grid for grid in range(GRID_RANGE[0], GRID_RANGE[1] + 1) if image_size % grid == 0]
    if not grids:
        low, high = GRID_RANGE
        nearest = max(low * 2, round(image_size / 16) * 16)
        raise ConfigError(
            f"image_size {image_size} cannot be cut into a grid of {low}x{low} to {high}x{high} "
            f"square patches (no divisor of {image_size} in {low}-{high}); use a multiple of "
            f"{low} (e.g. {nearest}), or give a preset whose patch size divides it."
        )
    return min(grids, key=lambda grid: abs(grid - TARGET_GRID))


def _batch_size(stats: FolderStats, batch_size: int | None) -> int:
    """Rule 3."""
    images = stats.train_images
    if batch_size is not None:
        return check_int(
            "batch_size",
            batch_size,
            minimum=1,
            maximum=images,
            fix=f"the folder has {images} training images",
        )
    fitting = [size for size in BATCH_SIZES if images / size >= MIN_STEPS_PER_EPOCH]
    return min(max(fitting, default=BATCH_SIZES[0]), images)


def _length(
    draft: FolderRecipe, stats: FolderStats, epochs: int | None, max_steps: int | None
) -> FolderRecipe:
    """Rule 4: ``epochs`` and ``max_steps`` of ``draft``."""
    if max_steps is not None:
        check_int("max_steps", max_steps, minimum=1)
    if epochs is not None:
        check_int("epochs", epochs, minimum=1)
        return replace(draft, epochs=epochs, max_steps=max_steps)
    low, high = EPOCH_RANGE
    wanted = min(max(math.ceil(TARGET_STEPS / draft.steps_per_epoch), low), high)
    per_image = _BACKWARD_FACTOR * count_flops(draft.config(num_classes=max(stats.num_classes, 2)))
    affordable = int(MAX_TRAINING_FLOPS // (per_image * stats.train_images))
    if affordable >= 1:
        return replace(draft, epochs=min(wanted, affordable), max_steps=max_steps)
    steps = max(1, int(MAX_TRAINING_FLOPS // (per_image * draft.batch_size)))
    bounded = steps if max_steps is None else min(steps, max_steps)
    return replace(draft, epochs=1, max_steps=bounded)


def _crop_aspect(stats: FolderStats) -> tuple[float, float]:
    """Rule 6: ImageNet's aspect range, widened to the middle 90% of the images' own."""
    low = min(BASE_CROP_ASPECT[0], stats.aspect(0.05))
    high = max(BASE_CROP_ASPECT[1], stats.aspect(0.95))
    return round(low, 2), round(high, 2)


def _pair(name: str, value: object, *, upper: float) -> tuple[float, float] | None:
    """``None``, or ``(low, high)`` with ``0 < low <= high <= upper``."""
    return None if value is None else check_range(name, value, upper=upper)


def _crop_ratio(value: object) -> float:
    return check_number(
        "crop_ratio",
        value,
        low=MIN_CROP_RATIO,
        high=1.0,
        fix="e.g. 0.875 (256 -> 224) or 1.0 (no border cut)",
    )


def explain(recipe: FolderRecipe, stats: FolderStats) -> str:
    """The one line `choose_recipe` puts in ``recipe.explanation``: each choice, then why;
    a choice the caller fixed is marked ``(given)``."""

    def mark(*names: str) -> str:
        return " (given)" if recipe.given & set(names) else ""

    low_side = min(min(pair) for pair in stats.image_sizes)
    high_side = max(max(pair) for pair in stats.image_sizes)
    length = f"{recipe.epochs} epochs{mark('epochs')} = {recipe.total_steps} steps"
    if recipe.max_steps is not None:
        length += f" (max_steps {recipe.max_steps}{mark('max_steps')})"
    if recipe.resize == "squash":
        evaluation = "test images squashed whole to the input size (keeps objects near the edges)"
    else:
        evaluation = f"test images centre-cropped to {recipe.crop_ratio:g} of the resized image"
    return (
        f"chose {recipe.preset}{mark('preset')} with {recipe.layers} layers{mark('layers')} at "
        f"{recipe.image_size} px{mark('image_size')} (a {recipe.grid}x{recipe.grid} grid; images "
        f"are {low_side}-{high_side} px, {stats.train_images} training images in "
        f"{stats.num_classes} classes), {length} of batch {recipe.batch_size}"
        f"{mark('batch_size')} (~{recipe.training_flops(stats.train_images) / 1e12:.1f} TFLOP, "
        f"bounded to fit minutes on 2 CPU cores), warmup {recipe.warmup_steps} steps"
        f"{mark('warmup_steps')}, lr {recipe.lr:g}{mark('lr')}, training crops of "
        f"{recipe.crop_scale[0]:.0%}-{recipe.crop_scale[1]:.0%} of the image{mark('crop_scale')} "
        f"at aspect {recipe.crop_aspect[0]:g}-{recipe.crop_aspect[1]:g}{mark('crop_aspect')} "
        f"with flips, {evaluation}{mark('resize', 'crop_ratio')}"
    )
