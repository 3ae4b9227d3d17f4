"""The data of ``vitlib train`` and ``vitlib finetune``: what a run trains on, chooses its best
epoch on, and tests once at the end; how its evaluation images are prepared.

The best epoch is chosen on a validation split: the data folder's ``valid/`` (or ``val/``), or
``--val-split`` of each class held out of ``train/`` (of the digits' train split). Only with
``--val-split 0`` and no validation folder does the test split choose it, and everything printed
and saved says so. Which data chose the model is recorded in the run's ``settings.json``
(``model_selection``): a resume holds out the same images, and ``vitlib evaluate`` tells when it
is given them. docs/training.md says more.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence, Sized
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, cast

from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset

from vitlib._checks import check_number
from vitlib.data import DigitsDataset, Preprocessing, digits_preprocessing
from vitlib.data.image_folder import load_image_splits
from vitlib.data.loaders import eval_loader, make_dataloaders, stratified_split
from vitlib.data.preprocessing import IMAGENET_CROP_ASPECT, MIN_CROP_RATIO
from vitlib.errors import CheckpointError
from vitlib.training.auto_recipe import DEFAULT_CROP_SCALE
from vitlib.training.errors import TrainingConfigError
from vitlib.training.history import ValName

__all__ = [
    "FOLDER_RESIZE",
    "RESIZE_RULES",
    "SELECTION_KEY",
    "RunData",
    "digits_data",
    "eval_preprocessing",
    "folder_data",
    "resolve_preprocessing_options",
    "run_loaders",
]

#: The ``--resize`` words and the `vitlib.data.Preprocessing` rule each stands for.
RESIZE_RULES: Final = {"squash": "squash", "shorter-side": "center_crop"}
#: The evaluation resize of image folders when ``--resize`` is not given: the whole image, so
#: that an object near an edge is never cut off (docs/training.md gives the measurements).
FOLDER_RESIZE: Final = "squash"
#: The key of the selection record in ``settings.json``.
SELECTION_KEY: Final = "model_selection"


@dataclass(frozen=True)
class RunData:
    """What a training command runs on.

    Attributes:
        train: The training images.
        val: The images the best epoch is chosen on.
        test: The test images, evaluated once at the end; ``None`` when ``val`` is the test split
            itself (``--val-split 0`` without a validation folder).
        classes: The class names, in label order.
        preprocessing: How the evaluation images are prepared, saved with the model.
        selection: What chose the model, as ``settings.json`` records it (``model_selection``):
            ``split`` (``"validation"`` or ``"test"``), ``source`` (in words), ``data`` (the
            data folder's absolute path, or ``"digits"``), ``folder`` (the folder the images
            come from) and ``held_out`` (the images held out of training: paths relative to
            ``train/``, or digits indices).
    """

    train: Dataset[Any]
    val: Dataset[Any]
    test: Dataset[Any] | None
    classes: list[str]
    preprocessing: Preprocessing
    selection: dict[str, Any]

    @property
    def val_name(self) -> ValName:
        """``"validation"``, or ``"test"`` when the test split chooses the model."""
        return "validation" if self.test is not None else "test"

    def describe(self) -> str:
        """One line saying which images choose the best epoch and which test it."""
        count = len(cast("Sized", self.val))
        if self.test is None:
            return (
                f"best/ is chosen on the test split itself ({count} images; --val-split 0 and no "
                "validation folder): its test accuracy is optimistic"
            )
        tested = len(cast("Sized", self.test))
        return (
            f"best/ is chosen on {count} validation images ({self.selection['source']}); the "
            f"{tested} test "
            "images are evaluated once, at the end"
        )


def resolve_preprocessing_options(args: argparse.Namespace) -> None:
    """Fill ``--resize`` and ``--crop-ratio`` for an image folder (``FOLDER_RESIZE``, or
    ``shorter-side`` when only a crop ratio is given; ratio 1.0), and the training crops'
    ``--crop-scale`` (the recipe's ``DEFAULT_CROP_SCALE``) and ``--crop-aspect`` (ImageNet's);
    refuse them all for the digits.

    Raises:
        ConfigError: ``--crop-ratio`` is not in [0.1, 1].
        TrainingConfigError: The flags are given for the digits, a crop ratio other than 1
            with ``--resize squash``, or a crop range whose LOW is above its HIGH.
    """
    if args.data is None:
        if args.resize is not None or args.crop_ratio is not None:
            raise TrainingConfigError(
                "--resize and --crop-ratio prepare the images of a --data folder, but this run "
                "is on the embedded digits, which are always enlarged whole (squashed, "
                "nearest-exact); drop them, or give --data FOLDER."
            )
        if args.crop_scale is not None or args.crop_aspect is not None:
            raise TrainingConfigError(
                "--crop-scale and --crop-aspect shape the training crops of a --data folder, "
                "but this run is on the embedded digits, which have their own augmentation "
                "(small shifts, rotations and scalings); drop them, or give --data FOLDER."
            )
        return
    if args.crop_scale is None:
        args.crop_scale = list(DEFAULT_CROP_SCALE)
    if args.crop_aspect is None:
        args.crop_aspect = list(IMAGENET_CROP_ASPECT)
    for flag, (low, high) in (
        ("--crop-scale", args.crop_scale),
        ("--crop-aspect", args.crop_aspect),
    ):
        if low > high:
            raise TrainingConfigError(
                f"{flag} {low:g} {high:g}: LOW is above HIGH; give the range as LOW HIGH, e.g. "
                f"{flag} {high:g} {low:g}."
            )
    if args.crop_ratio is not None:
        check_number(
            "--crop-ratio",
            args.crop_ratio,
            low=MIN_CROP_RATIO,
            high=1.0,
            fix="1.0 keeps the whole shorter side, 0.875 is ImageNet's 224 of 256",
        )
    if args.resize is None:
        args.resize = "shorter-side" if args.crop_ratio is not None else FOLDER_RESIZE
    if args.crop_ratio is None:
        args.crop_ratio = 1.0
    if args.resize == "squash" and args.crop_ratio != 1.0:
        raise TrainingConfigError(
            f"--crop-ratio {args.crop_ratio} with --resize squash: a squashed image keeps all of "
            "itself, so there is nothing to crop; use --resize shorter-side --crop-ratio "
            f"{args.crop_ratio} (resize the shorter side, cut the centre), or drop --crop-ratio."
        )


def eval_preprocessing(
    args: argparse.Namespace,
    image_size: int,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> Preprocessing:
    """The evaluation `Preprocessing` of a folder run: ``--resize`` and ``--crop-ratio`` (see
    `resolve_preprocessing_options`), ``mean`` and ``std`` (default ImageNet's)."""
    spec = Preprocessing(
        (image_size, image_size),
        resize=cast("Any", RESIZE_RULES[args.resize]),
        crop_ratio=args.crop_ratio,
    )
    return spec if mean is None or std is None else replace(spec, mean=mean, std=std)


def _recorded(saved: dict[str, Any] | None, path: Path) -> dict[str, Any] | None:
    """The selection record of a resumed run's settings, checked; ``None`` for a new run."""
    if saved is None:
        return None
    record = saved.get(SELECTION_KEY)
    if record is None:  # settings of an earlier vitlib, which chose on test/ (the caller checks)
        return None
    keys = ("split", "source", "data", "folder", "held_out")
    if not isinstance(record, dict) or any(key not in record for key in keys):
        raise CheckpointError(
            f"{path}'s {SELECTION_KEY!r} entry is {record!r}; expected a dict with the keys "
            f"{', '.join(keys)}, as vitlib writes it. Restore the file, or start a new run "
            "(--overwrite, or another --output-dir)."
        )
    return record


def _check_same_selection(
    recorded: dict[str, Any] | None, selection: dict[str, Any], path: Path
) -> None:
    """Refuse to resume a run on other validation data than it chose its best epochs on."""
    if recorded is None:
        return
    fields = ("split", "source", "data", "folder")
    if any(recorded[key] != selection[key] for key in fields):
        raise TrainingConfigError(
            f"--resume: the run chose its best epochs on {recorded['source']} "
            f"({recorded['folder']}), as {path} records, but the data now gives "
            f"{selection['source']} ({selection['folder']}); resuming would change what "
            "selects the model. Give the run its data as it was, or start a new run "
            "(--overwrite, or another --output-dir)."
        )


def folder_data(
    args: argparse.Namespace,
    preprocessing: Preprocessing,
    saved: dict[str, Any] | None,
    settings_path: Path,
) -> RunData:
    """The splits of the ``--data`` folder: ``valid/`` (or ``val/``), else ``--val-split`` of
    ``train/`` held out (the images a resumed run held out, by its ``saved`` settings)."""
    recorded = _recorded(saved, settings_path)
    held = recorded["held_out"] if recorded is not None and recorded["held_out"] else None
    splits = load_image_splits(
        args.data,
        preprocessing,
        val_split=0.0 if recorded is not None else args.val_split,
        seed=args.seed,
        held_out=held,
        strict=args.strict,
        crop_scale=(args.crop_scale[0], args.crop_scale[1]),
        crop_aspect=(args.crop_aspect[0], args.crop_aspect[1]),
    )
    root = Path(args.data).resolve()
    if splits.val is None:  # --val-split 0 and no validation folder: the test split chooses
        selection = _selection("test", "test/, itself", root, root / "test", [])
        run = RunData(splits.train, splits.test, None, splits.classes, preprocessing, selection)
    else:
        folder = cast("Path", splits.val_folder)
        source = (
            f"{folder.name}/"
            if not splits.held_out
            else f"held out of train/: {_share(args.val_split)} of each class, seed {args.seed}"
        )
        selection = _selection("validation", source, root, folder.resolve(), splits.held_out)
        run = RunData(
            splits.train, splits.val, splits.test, splits.classes, preprocessing, selection
        )
    _check_same_selection(recorded, selection, settings_path)
    return run


def _share(fraction: float) -> str:
    """``"10%"``: the share of each class held out, in words."""
    return f"{fraction:.0%}" if fraction * 100 == round(fraction * 100) else f"{fraction:.2%}"


def _selection(
    split: ValName, source: str, data: Path | str, folder: Path | str, held_out: Sequence[Any]
) -> dict[str, Any]:
    return {
        "split": split,
        "source": source,
        "data": str(data),
        "folder": str(folder),
        "held_out": list(held_out),
    }


def digits_data(
    args: argparse.Namespace,
    saved: dict[str, Any] | None,
    settings_path: Path,
    *,
    image_size: int,
    augment: bool,
) -> RunData:
    """The digits at ``image_size``: ``--val-split`` of each digit of the train split held out
    for validation (those a resumed run held out), the test split tested; ``augment`` as
    ``vitlib train`` trains (augmented images, next to a clean copy of each unless
    ``--no-clean-copies``)."""
    recorded = _recorded(saved, settings_path)
    clean = DigitsDataset("train", image_size=image_size)
    test = DigitsDataset("test", image_size=image_size)
    if recorded is not None and recorded["held_out"]:
        held_out = sorted(int(index) for index in recorded["held_out"])
        kept = sorted(set(range(len(clean))) - set(held_out))
    elif args.val_split > 0 and recorded is None:
        kept, held_out = stratified_split(clean.targets, args.val_split, seed=args.seed)
    else:
        kept, held_out = list(range(len(clean))), []
    train: Dataset[Any] = Subset(clean, kept)
    if augment:
        augmented = Subset(DigitsDataset("train", image_size=image_size, augment=True), kept)
        # Augmented next to clean images: the test images are sharp, the augmented ones slightly
        # blurred by resampling (see benchmarks/digits_learning_target.py).
        train = ConcatDataset([augmented, train]) if args.clean_copies else augmented
    spec = digits_preprocessing(image_size)
    if not held_out:
        selection = _selection("test", "the digits test split, itself", "digits", "digits", [])
        run = RunData(train, test, None, clean.classes, spec, selection)
    else:
        share = _share(args.val_split)
        source = f"held out of the digits train split: {share} of each digit, seed {args.seed}"
        selection = _selection("validation", source, "digits", "digits", held_out)
        run = RunData(train, Subset(clean, held_out), test, clean.classes, spec, selection)
    _check_same_selection(recorded, selection, settings_path)
    return run


def run_loaders(
    data: RunData, args: argparse.Namespace, *, distributed: bool = False
) -> tuple[DataLoader[Any], DataLoader[Any], DataLoader[Any] | None]:
    """``(train, validation, test or None)`` loaders of ``data`` with the command's batch size,
    workers and seed; under ``torchrun`` the training set is sharded."""
    train_loader, val_loader = make_dataloaders(
        data.train,
        data.val,
        args.batch_size,
        num_workers=args.num_workers,
        seed=args.seed,
        distributed=distributed,
    )
    if data.test is None:
        return train_loader, val_loader, None
    test_loader = eval_loader(data.test, args.batch_size, num_workers=args.num_workers)
    return train_loader, val_loader, test_loader
