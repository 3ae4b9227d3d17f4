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
from vitlib.checkpoints.run_folder import BEST, LAST, SETTINGS_FILE
from vitlib.data.loaders import decode_workers, eval_loader
from vitlib.data.preprocessing import Preprocessing
from vitlib.errors import DataError, VitlibError
from vitlib.files import read_json
from vitlib.training.run_data import SELECTION_KEY
from vitlib.vit import ViT

__all__ = ["LabelledData", "class_folder_root", "data_caveat", "labelled_data", "run_of"]

#: ``(labels, loader, sample sources or None, preprocessing or None)``.
LabelledData = tuple[tuple[str, ...], Iterable[Any], list[str] | None, Preprocessing | None]


def labelled_data(
    model: ViT,
    data: str | os.PathLike[str] | DataLoader[Any] | Dataset[Any] | Iterable[Any],
    *,
    batch_size: int,
    strict: bool,
    num_workers: int | None = None,
) -> LabelledData:
    """``(labels, loader, sample sources, preprocessing)`` for ``data``, as
    [`evaluate_model`][vitlib.evaluate_model] takes it; a folder's images are decoded by
    ``num_workers`` processes (``None``: [`decode_workers`][vitlib.data.loaders.decode_workers]
    chooses).

    Raises:
        ConfigError: ``batch_size`` is not an int >= 1, or ``num_workers`` is negative or over
            ``max_num_workers``.
        InputTypeError: ``data`` is none of the kinds ``evaluate_model`` takes.
        DataError: ``"digits"`` for a model that is not a 1-channel 10-class one, or a folder
            whose classes do not fit the model.
    """
    check_positive_int("batch_size", batch_size)
    decode_workers(num_workers, 0, batch_size)  # checked whatever the data
    recorded = model_metadata(model)
    classes = model.config.num_classes
    if isinstance(data, str) and data == "digits":
        return _digits(model, batch_size)
    if isinstance(data, (str, os.PathLike)):
        return _folder(
            model, Path(data), batch_size=batch_size, strict=strict, num_workers=num_workers
        )
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


def _folder(
    model: ViT, root: Path, *, batch_size: int, strict: bool, num_workers: int | None
) -> LabelledData:
    from vitlib.data.image_folder import ImageFolderDataset

    metadata = model_metadata(model)
    root = class_folder_root(root, metadata.labels)
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
    workers = decode_workers(num_workers, len(folder), batch_size)
    loader = eval_loader(_Relabelled(folder, mapping), batch_size, num_workers=workers)
    sources = [str(path) for path, _ in folder.samples]
    return tuple(labels), loader, sources, spec


def class_folder_root(root: Path, labels: Sequence[str] | None) -> Path:
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


def run_of(model: object) -> Path | None:
    """The run folder of a model given as a path: the path itself, or the run holding it when
    it is a run's ``best/`` or ``last/``; ``None`` unless that folder has the ``settings.json``
    of ``vitlib train`` or ``vitlib finetune``."""
    if not isinstance(model, (str, os.PathLike)) or isinstance(model, bytes):
        return None
    path = Path(model)
    for folder in (path, path.parent) if path.name in (BEST, LAST) else (path,):
        if (folder / SETTINGS_FILE).is_file():
            return folder
    return None


def data_caveat(model: object, data: object, labels: Sequence[str]) -> str | None:
    """Why an evaluation of ``model`` on ``data`` is optimistic, if its run records a reason.

    A run of ``vitlib train`` or ``vitlib finetune`` records in ``settings.json`` the data
    that chose its best epoch (``model_selection``) and the folder it trained on (``--data``):
    evaluating on either flatters the model. Runs of an earlier vitlib, which record no
    selection, chose on their test split.

    Args:
        model: What was given to ``evaluate_model`` (a path may name a run).
        data: The data evaluated: ``"digits"`` or a folder (others are never the run's).
        labels: The model's class names (to find the folder of classes evaluated).

    Returns:
        One sentence for the report, or ``None``.
    """
    run = run_of(model)
    if run is None:
        return None
    try:
        settings = read_json(run / SETTINGS_FILE)
    except (VitlibError, OSError):  # unreadable: the report stands without its caveat
        return None
    record = settings.get(SELECTION_KEY) if isinstance(settings, dict) else None
    trained_on = settings.get("--data") if isinstance(settings, dict) else None
    if record is None:  # an earlier vitlib: best/ chosen on the test split
        record = {"split": "test", "source": "test/, itself", "held_out": []}
        record["data"] = "digits" if trained_on is None else str(Path(trained_on).resolve())
        record["folder"] = "digits" if trained_on is None else str(Path(record["data"], "test"))
    if not isinstance(record, dict):
        return None
    if isinstance(data, str) and data == "digits":
        if record.get("folder") == "digits" and record.get("split") == "test":
            return (
                f"the run {run} chose its best epoch on the digits test split, the images "
                "data='digits' evaluates, so this accuracy is optimistic (it was trained with "
                "--val-split 0; a run with a validation split keeps the test split clean)."
            )
        return None
    if not isinstance(data, (str, os.PathLike)) or record.get("data") == "digits":
        return None
    evaluated = class_folder_root(Path(data), labels).resolve()
    return _folder_caveat(run, evaluated, record)


def _folder_caveat(run: Path, evaluated: Path, record: dict[str, Any]) -> str | None:
    """The caveat for the class folders ``evaluated`` against the run's selection ``record``."""
    chose = Path(str(record.get("folder"))).resolve() == evaluated
    held_out = record.get("held_out") or []
    trained = Path(str(record.get("data")), "train").resolve() == evaluated
    if chose and not held_out:
        return (
            f"{evaluated} chose this model: the run {run} kept its best epoch by the accuracy "
            f"on these images ({record.get('source')}), so this accuracy is optimistic. "
            "Evaluate on images the run never saw: its test/ split, or new ones."
        )
    if trained:
        also = (
            f", except the {len(held_out)} images it held out to choose its best epoch on"
            if held_out
            else ""
        )
        return (
            f"{evaluated} is the training data of the run {run}{also}: this accuracy shows how "
            "well the model fits images it learnt from, not how well it does on new ones. "
            "Evaluate on its test/ split, or new images."
        )
    return None
