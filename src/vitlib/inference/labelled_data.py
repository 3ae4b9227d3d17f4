"""The labelled data [`evaluate_model`][vitlib.evaluate_model] reads: the digits test split, a
folder of class folders (matched to the model's class names by name, prepared by its recorded
preprocessing) or the caller's own loader."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from vitlib._checks import check_positive_int, type_error
from vitlib.checkpoints.metadata import default_preprocessing, model_metadata
from vitlib.data.preprocessing import Preprocessing
from vitlib.errors import DataError
from vitlib.vit import ViT

__all__ = ["LabelledData", "labelled_data"]

#: ``(labels, loader, sample sources or None, preprocessing or None)``.
LabelledData = tuple[tuple[str, ...], Iterable[Any], list[str] | None, Preprocessing | None]


def labelled_data(
    model: ViT,
    data: str | os.PathLike[str] | DataLoader[Any] | Dataset[Any] | Iterable[Any],
    *,
    batch_size: int,
    strict: bool,
) -> LabelledData:
    """``(labels, loader, sample sources, preprocessing)`` for ``data``, as
    [`evaluate_model`][vitlib.evaluate_model] takes it.

    Raises:
        ConfigError: ``batch_size`` is not an int >= 1.
        InputTypeError: ``data`` is none of the kinds ``evaluate_model`` takes.
        DataError: ``"digits"`` for a model that is not a 1-channel 10-class one, or a folder
            whose classes do not fit the model.
    """
    check_positive_int("batch_size", batch_size)
    recorded = model_metadata(model)
    classes = model.config.num_classes
    if isinstance(data, str) and data == "digits":
        return _digits(model, batch_size)
    if isinstance(data, (str, os.PathLike)):
        return _folder(model, Path(data), batch_size=batch_size, strict=strict)
    if isinstance(data, (bytes, bytearray)) or not isinstance(data, (Iterable, Dataset)):
        raise type_error(
            "data",
            data,
            "'digits', a folder path (str or os.PathLike), a DataLoader (or iterable) of "
            "(images, labels) batches, or a Dataset of (image, label) samples",
        )
    if isinstance(data, Dataset) and not isinstance(data, DataLoader):
        data = DataLoader(data, batch_size=batch_size, shuffle=False)
    labels = recorded.labels or tuple(str(index) for index in range(classes))
    return labels, data, None, recorded.preprocessing


def _digits(model: ViT, batch_size: int) -> LabelledData:
    from vitlib.data.digits import DigitsDataset, digits_preprocessing

    config = model.config
    if config.in_channels != 1 or config.num_classes != 10:
        raise DataError(
            f"data='digits' needs a model of 1-channel images and 10 classes, got "
            f"{config.in_channels} channel(s) and {config.num_classes} classes; evaluate it on "
            "an image folder instead."
        )
    test = DigitsDataset("test", image_size=config.image_hw[0])
    spec = digits_preprocessing(config.image_hw[0])
    loader = DataLoader(test, batch_size=batch_size, shuffle=False)
    sources = [f"digits test #{index}" for index in range(len(test))]
    return tuple(test.classes), loader, sources, spec


class _Relabelled(Dataset[tuple[Tensor, int]]):
    """An image folder whose labels are the model's class indices of its class names."""

    def __init__(self, folder: Any, mapping: list[int]) -> None:
        self.folder = folder
        self.mapping = mapping

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image, label = self.folder[index]
        return image, self.mapping[label]


def _folder(model: ViT, root: Path, *, batch_size: int, strict: bool) -> LabelledData:
    from vitlib.data.image_folder import ImageFolderDataset

    metadata = model_metadata(model)
    root = _class_folders(root, metadata.labels)
    spec = metadata.preprocessing or default_preprocessing(model.config)
    folder = ImageFolderDataset(root, spec.transform(), strict=strict)
    labels = metadata.labels
    if labels is None:
        if len(folder.classes) != model.config.num_classes:
            raise DataError(
                f"the model records no class names and {root} has {len(folder.classes)} class "
                f"folders for its {model.config.num_classes} outputs; expected one folder per "
                "output, in the order the model was trained with (sorted names)."
            )
        labels = tuple(folder.classes)
    position = {label: index for index, label in enumerate(labels)}
    unknown = [name for name in folder.classes if name not in position]
    if unknown:
        shown = list(labels[:20]) + (["..."] if len(labels) > 20 else [])
        raise DataError(
            f"{root} has class folders {unknown[:20]} that the model does not know; expected "
            f"folders named after its {len(labels)} classes {shown}. Rename or remove them."
        )
    mapping = [position[name] for name in folder.classes]
    loader = DataLoader(_Relabelled(folder, mapping), batch_size=batch_size, shuffle=False)
    sources = [str(path) for path, _ in folder.samples]
    return tuple(labels), loader, sources, spec


def _class_folders(root: Path, labels: Sequence[str] | None) -> Path:
    """The folder whose sub-folders are the classes: ``root/test`` when ``root`` holds the
    layout ``vitlib train`` reads (``train/`` and ``test/``) or only a ``test/`` split (a
    ``test/`` folder and no other, unless the model has a class named ``test``); else ``root``.
    """
    test = root / "test"
    if not test.is_dir():
        return root
    if (root / "train").is_dir():
        return test
    others = [
        entry for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith(".")
    ]
    only_test = others == [test]
    return test if only_test and "test" not in (labels or ()) else root
