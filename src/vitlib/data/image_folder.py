"""Image-classification folders, ``root/<class_name>/<image files>`` (e.g. Sports-Mini)."""

from __future__ import annotations

import copy
import errno
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from torch import Tensor
from torch.utils.data import Dataset, Subset

from vitlib._checks import check_bool, check_number
from vitlib._optional import missing_extra
from vitlib.data.loaders import stratified_split
from vitlib.data.preprocessing import (
    IMAGENET_CROP_ASPECT,
    IMAGENET_CROP_SCALE,
    Preprocessing,
    PreprocessTransform,
    train_transform,
)
from vitlib.data.transforms import (
    EXIF_ORIENTATION_TAG,
    HIGH_PRECISION_MODES,
    QUARTER_TURNS,
    apply_exif_orientation,
    pil_to_tensor,
)
from vitlib.errors import DataError
from vitlib.files import missing

if TYPE_CHECKING:
    from PIL import Image

#: The most a JPEG is reduced in its decoder: to 1/2 of its side. Pillow's deeper reductions
#: filter in the DCT, more coarsely than the resize does: on a weak trained model (46% on
#: generated shapes) 1/8 moved class probabilities by up to 0.082 against the full decode, 1/4
#: by 0.045 and 1/2 by 0.011 (benchmarks/decode_agreement.py, docs/predict.md).
MAX_DECODE_REDUCTION: Final = 2
IMAGE_EXTENSIONS: Final = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
"""File suffixes read as images, compared case-insensitively."""

VALIDATION_FOLDERS: Final = ("valid", "val")
"""The names of a validation split beside ``train/`` and ``test/`` (Roboflow's and Kaggle's)."""

_NAMED_SKIPS: Final = 3
_LAYOUT: Final = "data_dir/train/<class_name>/<images> and data_dir/test/<class_name>/<images>"


class SkippedImagesWarning(UserWarning):
    """Some files with image extensions could not be read and were left out of an image folder."""


class ImageFolderDataset(Dataset[tuple[Tensor, int]]):
    """Images in ``root/<class_name>/<image files>``, one folder per class.

    Class folders are the sub-folders of ``root`` not starting with ``"."``; images are the files
    below each, at any depth, whose suffix is in ``IMAGE_EXTENSIONS`` (case-insensitive). Each is
    loaded by [`load_image`][vitlib.data.ImageFolderDataset.load_image].

    Unreadable images (headers checked at construction with Pillow's ``verify``; images above
    ``PIL.Image.MAX_IMAGE_PIXELS`` count as decompression bombs) are left out with one
    [`SkippedImagesWarning`][vitlib.data.SkippedImagesWarning] naming them and why, or raise with
    ``strict=True``; docs/data.md tells the whole policy.

    Args:
        root: The folder holding one sub-folder per class.
        transform: Maps a ``PIL.Image.Image`` to a tensor; default
            [`pil_to_tensor`][vitlib.data.transforms.pil_to_tensor]
            (RGB in [0, 1] at the original size, so batches need images of one size).
        strict: Raise on the first unreadable image instead of skipping it.

    Raises:
        ImportError: If Pillow is missing (``pip install "vitlib[data]"``).
        FileNotFoundError: If ``root`` does not exist.
        NotADirectoryError: If ``root`` is a file.
        DataError: (a ``ValueError``) If there are no class folders, no images, a class folder
            without readable images, or (``strict=True``) an unreadable image.

    Attributes:
        classes: Sorted class-folder names; a label is an index into it.
        class_to_idx: ``{class_name: label}``.
        samples: ``(path, label)`` per image, sorted by class then path.
        targets: The labels of ``samples``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        transform: Callable[[Image.Image], Tensor] | None = None,
        *,
        strict: bool = False,
    ) -> None:
        check_bool("strict", strict)
        _pillow_available()
        self.root = Path(root)
        self.transform = transform
        self.classes = _find_classes(self.root)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        self.samples = _find_samples(self.root, self.classes, strict=strict)
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        """Number of readable images."""
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        """Return ``(transform(image), label)`` for the image at ``index``.

        Raises:
            OSError: As [`load_image`][vitlib.data.ImageFolderDataset.load_image].
            DataError: (a ``ValueError``) If the transform raises one (e.g. a float image outside
                [0, 1]); the message is prefixed with the image's path.
        """
        transform = self.transform if self.transform is not None else pil_to_tensor
        path, label = self.samples[index]
        image = self.load_image(index)
        try:
            return transform(image), label
        except DataError as error:
            raise DataError(f"image {path}: {error}") from error

    def load_image(self, index: int) -> Image.Image:
        """Load the image at ``index``, upright and untransformed.

        Read by [`open_image`][vitlib.data.image_folder.open_image] (turned upright by its EXIF
        orientation tag, then removed), then converted to RGB, except 16-bit and float greyscale
        images (``HIGH_PRECISION_MODES``), which keep their mode, also for a custom transform
        (docs/data.md tells why and how the transforms read them).

        Raises:
            OSError: Naming the file, if it cannot be decoded or is a decompression bomb (more than
                ``PIL.Image.MAX_IMAGE_PIXELS`` pixels).
        """
        path = self.samples[index][0]
        # The evaluation transform resizes to a known size: a JPEG decodes at a reduced scale.
        transform = self.transform
        reduced = transform.preprocessing if isinstance(transform, PreprocessTransform) else None
        try:
            image = open_image(path, reduced)
        except DataError as error:
            raise OSError(f"cannot decode image {path}: {error}") from error
        return image if image.mode in HIGH_PRECISION_MODES else image.convert("RGB")

    def __repr__(self) -> str:
        """Summarise root, size and classes."""
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, images={len(self)}, "
            f"classes={len(self.classes)})"
        )


def load_image_folders(
    data_dir: str | os.PathLike[str],
    preprocessing: Preprocessing | None = None,
    *,
    image_size: int = 224,
    strict: bool = False,
    crop_scale: tuple[float, float] = IMAGENET_CROP_SCALE,
    crop_aspect: tuple[float, float] = IMAGENET_CROP_ASPECT,
) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """Load ``data_dir/train`` and ``data_dir/test`` with the train and eval transforms.

    The test set is prepared by ``preprocessing``'s transform (as by ``predict``), the train set
    by [`train_transform`][vitlib.data.train_transform] at the same size, channels and
    normalisation. A ``valid/`` folder is not read here: for a validation split to choose a
    model on, use [`load_image_splits`][vitlib.data.image_folder.load_image_splits].

    Args:
        data_dir: The folder holding ``train/`` and ``test/``, each with one sub-folder per class.
        preprocessing: How the model's images are made; default
            [`Preprocessing.imagenet(image_size)`][vitlib.data.Preprocessing.imagenet]
            (ImageNet's mean and std; a pretrained checkpoint's own when fine-tuning).
        image_size: Side of the square images, without ``preprocessing``.
        strict: Passed to [`ImageFolderDataset`][vitlib.data.ImageFolderDataset].
        crop_scale: The training crops' area range, as a fraction of the image (``scale`` of
            [`train_transform`][vitlib.data.train_transform]; ImageNet's by default).
        crop_aspect: The training crops' aspect-ratio range (``ratio`` of ``train_transform``).

    Returns:
        ``(train_dataset, test_dataset)``, with identical ``classes``.

    Raises:
        FileNotFoundError: If ``data_dir``, ``train/`` or ``test/`` is missing.
        NotADirectoryError: If ``data_dir`` is a file.
        DataError: (a ``ValueError``) If train and test have different class sets, or as
            [`ImageFolderDataset`][vitlib.data.ImageFolderDataset].
    """
    data_dir = Path(data_dir)
    _check_directory(data_dir, "data_dir", f"create it with the layout {_LAYOUT}")
    for split in ("train", "test"):
        if not (data_dir / split).is_dir():
            raise FileNotFoundError(
                f"no {split}/ folder in {data_dir}; expected the layout {_LAYOUT}"
            )
    spec = preprocessing if preprocessing is not None else Preprocessing.imagenet(image_size)
    augment = train_transform(spec, scale=crop_scale, ratio=crop_aspect)
    train = ImageFolderDataset(data_dir / "train", augment, strict=strict)
    test = ImageFolderDataset(data_dir / "test", spec.transform(), strict=strict)
    _check_same_classes(train, test, data_dir)
    return train, test


def _check_same_classes(train: ImageFolderDataset, other: ImageFolderDataset, root: Path) -> None:
    split = f"{other.root.name}/"
    if train.classes != other.classes:
        only_train = sorted(set(train.classes) - set(other.classes))
        only_other = sorted(set(other.classes) - set(train.classes))
        raise DataError(
            f"train and {other.root.name} class folders differ in {root}: only in train/: "
            f"{only_train}, only in {split}: {only_other}; give the splits the same class folders"
        )


def validation_folder(data_dir: str | os.PathLike[str]) -> Path | None:
    """``data_dir/valid`` or ``data_dir/val`` (`VALIDATION_FOLDERS`), if there is one.

    Raises:
        DataError: Both are there: which one selects the model would be a guess.
    """
    found = [Path(data_dir, name) for name in VALIDATION_FOLDERS if Path(data_dir, name).is_dir()]
    if len(found) > 1:
        raise DataError(
            f"{data_dir} holds both {found[0].name}/ and {found[1].name}/; expected at most one "
            "validation folder beside train/ and test/. Merge them or rename one."
        )
    return found[0] if found else None


@dataclass(frozen=True)
class ImageSplits:
    """The splits of an image folder, as
    [`load_image_splits`][vitlib.data.image_folder.load_image_splits] makes them.

    Attributes:
        train: The training images (``train/``, less those held out), with the training transform.
        val: The validation images, prepared as the test images; ``None`` without a validation
            folder and with ``val_split=0``.
        test: ``test/``, prepared by the preprocessing's transform.
        classes: The class names; a label is an index into them.
        val_folder: Where ``val`` comes from: ``valid/`` or ``val/``, or ``train/`` when it is
            held out of it; ``None`` with ``val`` ``None``.
        held_out: The images held out of ``train/`` for ``val``, as paths relative to
            ``train/`` (``/``-separated); empty when ``val`` is a folder of its own.
    """

    train: Dataset[tuple[Tensor, int]]
    val: Dataset[tuple[Tensor, int]] | None
    test: ImageFolderDataset
    classes: list[str]
    val_folder: Path | None
    held_out: tuple[str, ...]


def load_image_splits(
    data_dir: str | os.PathLike[str],
    preprocessing: Preprocessing | None = None,
    *,
    val_split: float = 0.1,
    seed: int = 0,
    held_out: Sequence[str] | None = None,
    image_size: int = 224,
    strict: bool = False,
    crop_scale: tuple[float, float] = IMAGENET_CROP_SCALE,
    crop_aspect: tuple[float, float] = IMAGENET_CROP_ASPECT,
) -> ImageSplits:
    """Load ``train/``, a validation split and ``test/`` of ``data_dir``, to select a model on
    the validation images and test it once, on images it was neither trained nor selected on.

    The validation images are ``data_dir/valid/`` (or ``val/``) when there is one; otherwise
    ``val_split`` of each class of ``train/`` is held out by
    [`stratified_split`][vitlib.data.loaders.stratified_split] (seeded by ``seed``), or exactly
    the files ``held_out`` names (a resumed run's split). Validation and test images are prepared
    by ``preprocessing``'s transform, the training images by
    [`train_transform`][vitlib.data.train_transform], as in
    [`load_image_folders`][vitlib.data.load_image_folders].

    Args:
        data_dir: The folder holding ``train/``, ``test/`` and perhaps ``valid/`` or ``val/``.
        preprocessing: How the model's images are made; default ``Preprocessing.imagenet``.
        val_split: The share of each class of ``train/`` held out without a validation folder,
            in [0, 1); 0 holds nothing out (``val`` is then ``None``).
        seed: Seed of the held-out draw.
        held_out: Hold out these files of ``train/`` (paths relative to it) instead of drawing
            them; a validation folder may not be there too.
        image_size: Side of the square images, without ``preprocessing``.
        strict: Passed to [`ImageFolderDataset`][vitlib.data.ImageFolderDataset].
        crop_scale: The training crops' area range (as in `load_image_folders`).
        crop_aspect: The training crops' aspect-ratio range (as in `load_image_folders`).

    Returns:
        The [`ImageSplits`][vitlib.data.image_folder.ImageSplits].

    Raises:
        FileNotFoundError: ``data_dir``, ``train/`` or ``test/`` is missing, or a ``held_out``
            file is not in ``train/`` any more.
        DataError: The splits have different class sets, both ``valid/`` and ``val/`` are
            there, nothing can be held out, or as
            [`ImageFolderDataset`][vitlib.data.ImageFolderDataset].
        ConfigError: ``val_split`` is not in [0, 1).
    """
    check_number("val_split", val_split, low=0.0, high=1.0, high_open=True, fix="0 holds none out")
    train, test = load_image_folders(
        data_dir,
        preprocessing,
        image_size=image_size,
        strict=strict,
        crop_scale=crop_scale,
        crop_aspect=crop_aspect,
    )
    prepare = test.transform
    folder = validation_folder(data_dir)
    if folder is not None:
        if held_out is not None:
            raise DataError(
                f"{data_dir} now has a validation folder, {folder.name}/, but the split to "
                f"reproduce held {len(held_out)} images out of train/; move {folder} away to "
                "continue that run, or start a new one."
            )
        val = ImageFolderDataset(folder, prepare, strict=strict)
        _check_same_classes(train, val, Path(data_dir))
        return ImageSplits(train, val, test, train.classes, folder, ())
    if held_out is None and val_split == 0:
        return ImageSplits(train, None, test, train.classes, None, ())
    names = [path.relative_to(train.root).as_posix() for path, _ in train.samples]
    if held_out is None:
        kept, out = stratified_split(train.targets, val_split, seed=seed)
    else:
        out = _positions(names, held_out, train.root)
        kept = sorted(set(range(len(names))) - set(out))
    evaluated = copy.copy(train)
    evaluated.transform = prepare
    return ImageSplits(
        Subset(train, kept),
        Subset(evaluated, out),
        test,
        train.classes,
        train.root,
        tuple(names[index] for index in out),
    )


def _positions(names: list[str], held_out: Sequence[str], root: Path) -> list[int]:
    """The positions of the ``held_out`` files among ``names`` (files of ``root``)."""
    position = {name: index for index, name in enumerate(names)}
    missing_files = [name for name in held_out if name not in position]
    if missing_files:
        raise FileNotFoundError(
            f"{len(missing_files)} of the {len(held_out)} validation images to hold out of "
            f"{root} are not there (or no longer readable), e.g. {missing_files[:3]}; put them "
            "back to reproduce the split, or start a new run."
        )
    return sorted(position[name] for name in held_out)


def open_image(path: Path, preprocessing: Preprocessing | None = None) -> Image.Image:
    """Open and decode the image file ``path`` once, upright by its EXIF orientation.

    The one reader of image files: ``ImageFolderDataset`` and ``predict`` use it. Given the
    ``preprocessing`` the image is for, a JPEG is decoded at half its side when that stays at
    least as large as what the preprocessing resizes it to
    ([`Preprocessing.resize_target`][vitlib.data.Preprocessing.resize_target]; Pillow's draft
    mode, which reduces in the decoder's DCT, `MAX_DECODE_REDUCTION`): a camera photo for a
    224-pixel model decodes in about half the time, and the exact resize and crop follow.
    docs/predict.md gives the agreement with the full decode.

    Raises:
        MissingExtraError: Pillow is missing (``pip install "vitlib[data]"``).
        DataError: ``path`` is no regular file, cannot be decoded, or is a decompression bomb
            (more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels); the message says why and what to
            do, without repeating the path.
    """
    with _pillow_image(path) as image:
        if preprocessing is not None and image.format == "JPEG":
            _decode_reduced(image, preprocessing)
        upright = apply_exif_orientation(image)
        upright.load()
        return upright if upright is not image else image.copy()


def _decode_reduced(image: Image.Image, preprocessing: Preprocessing) -> None:
    """Set ``image``'s JPEG decoder to the smallest scale, down to `MAX_DECODE_REDUCTION`, that
    still covers what ``preprocessing`` resizes it to (in the stored orientation, before the
    EXIF turn)."""
    stored = (image.height, image.width)
    turned = image.getexif().get(EXIF_ORIENTATION_TAG, 1) in QUARTER_TURNS
    height, width = preprocessing.resize_target(stored[::-1] if turned else stored)
    if turned:
        height, width = width, height
    floor = (image.width // MAX_DECODE_REDUCTION, image.height // MAX_DECODE_REDUCTION)
    image.draft(None, (max(width, floor[0]), max(height, floor[1])))


class _UnreadableImageError(DataError):
    """An image file Pillow cannot read; ``reason`` says why in a few words."""

    def __init__(self, reason: str, fix: str = "") -> None:
        super().__init__(f"{reason}; {fix}" if fix else reason)
        self.reason = reason


@contextmanager
def _pillow_image(path: Path) -> Iterator[Image.Image]:
    """``path`` opened by Pillow, decompression bombs refused (Pillow only warns between
    ``MAX_IMAGE_PIXELS`` and twice that; the warning is an error here, locally), every failure
    to read it an ``_UnreadableImageError``."""
    try:
        from PIL import Image
    except ImportError as error:
        raise missing_extra("Pillow", "data", "Reading images") from error
    if not path.exists():
        raise _UnreadableImageError(
            f"the file {missing(path)}" if path.is_symlink() else "no such file"
        )
    if not path.is_file():
        raise _UnreadableImageError("not a regular file")
    bombs = (Image.DecompressionBombWarning, Image.DecompressionBombError)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                yield image
    except _UnreadableImageError:
        raise
    except (OSError, SyntaxError, ValueError, *bombs) as error:
        message = str(error).replace(repr(str(path)), "").strip()
        fix = "delete or replace the file"
        if isinstance(error, bombs):
            reason = f"decompression bomb: {message.split(', could be')[0]}"
            fix += " (or, if the image is genuine, raise PIL.Image.MAX_IMAGE_PIXELS)"
        else:
            reason = f"{type(error).__name__}: {message}" if message else type(error).__name__
        raise _UnreadableImageError(reason, fix) from error


def _check_directory(path: Path, name: str, fix: str) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{name} {path} {missing(path)}; {fix}")
    if not path.is_dir():
        raise NotADirectoryError(f"{name} {path} is a file, expected a folder; {fix}")


def _find_classes(root: Path) -> list[str]:
    fix = "point it at a folder with one sub-folder of images per class"
    _check_directory(root, "root", fix)
    classes = sorted(
        entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith(".")
    )
    if not classes:
        raise DataError(f"no class folders in {root}; {fix}, e.g. {root}/<class_name>/<image>.jpg")
    return classes


def _find_samples(root: Path, classes: list[str], *, strict: bool) -> list[tuple[Path, int]]:
    """List readable images per class; skip or raise on unreadable ones (see the class doc)."""
    candidates = {name: image_files(root / name) for name in classes}
    if not any(candidates.values()):
        raise DataError(
            f"no images in {root}: its class folders {classes} hold no files ending in "
            f"{sorted(IMAGE_EXTENSIONS)}; add images as {root}/<class_name>/<image>.jpg"
        )
    samples: list[tuple[Path, int]] = []
    skipped: list[tuple[Path, str]] = []
    for label, name in enumerate(classes):
        readable = []
        for path in candidates[name]:
            try:
                with _pillow_image(path) as image:
                    image.verify()  # cheap: the header and the structure, not the pixels
            except _UnreadableImageError as error:
                if strict:
                    raise DataError(
                        f"unreadable image {path}: {error}, or pass strict=False to skip "
                        "unreadable images"
                    ) from error
                skipped.append((path, error.reason))
            else:
                readable.append(path)
        if not readable:
            found = (
                f"no readable images ({len(candidates[name])} unreadable)"
                if candidates[name]
                else "no images"
            )
            raise DataError(
                f"class folder {root / name} has {found}; add images ending in one of "
                f"{sorted(IMAGE_EXTENSIONS)} or remove the folder"
            )
        samples.extend((path, label) for path in readable)
    if skipped:
        named = ", ".join(f"{path} ({reason})" for path, reason in skipped[:_NAMED_SKIPS])
        more = f" and {len(skipped) - _NAMED_SKIPS} more" if len(skipped) > _NAMED_SKIPS else ""
        warnings.warn(
            f"skipped {len(skipped)} unreadable image(s) in {root}: {named}{more}; "
            "pass strict=True (on the command line --strict) to raise instead",
            SkippedImagesWarning,
            stacklevel=3,
        )
    return samples


def image_files(folder: Path) -> list[Path]:
    """The image files below ``folder`` at any depth (suffix in ``IMAGE_EXTENSIONS``), sorted;
    hidden files and folders (``.ipynb_checkpoints``) left out, folder links not followed.

    Raises:
        PermissionError: A folder below ``folder`` (or itself) cannot be listed; the message
            names it, instead of its images going missing without a word.
    """

    def refuse_unreadable(error: OSError) -> None:
        if isinstance(error, PermissionError):
            raise PermissionError(
                errno.EACCES,
                f"permission denied listing the folder {error.filename}; make it readable "
                "(chmod u+rx) or move it out of the data folder",
                error.filename,
            ) from error

    found = []
    for directory, subfolders, names in os.walk(folder, onerror=refuse_unreadable):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in names:
            path = Path(directory, name)
            image = not name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS
            if image and (path.is_file() or path.is_symlink()):  # a dead link: named, skipped
                found.append(path)
    return sorted(found)


def _pillow_available() -> None:
    try:
        import PIL.Image  # noqa: F401
    except ImportError as error:
        raise missing_extra("Pillow", "data", "ImageFolderDataset") from error
