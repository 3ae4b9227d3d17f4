"""`evaluate_model`: how well a saved model does on labelled data, class by class.

```python
report = vitlib.evaluate_model("runs/sports", "data/my_photos")   # a folder of class folders
report.accuracy, report.top_k_accuracy, report.per_class[0].f1
report.save("runs/sports/evaluation")   # report.json, confusion_matrix.png, mistakes.png
```

Loss and accuracy are those of [`vitlib.training.evaluate`][vitlib.training.evaluate] (the
per-epoch check of ``fit``) on the same loader; this adds top-k accuracy, per-class precision,
recall and F1, the confusion matrix and the most confident mistakes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from vitlib._checks import check_non_negative_int, check_positive_int
from vitlib._runtime import resolve_device
from vitlib.checkpoints.metadata import default_preprocessing, model_metadata
from vitlib.data.preprocessing import Preprocessing
from vitlib.errors import DataError
from vitlib.files import dump_json, write_files
from vitlib.inference.predict import resolve_model
from vitlib.training.engine import evaluate
from vitlib.vit import ViT

__all__ = ["ClassMetrics", "EvaluationReport", "Mistake", "evaluate_model"]

REPORT_FILE: Final = "report.json"
CONFUSION_FILE: Final = "confusion_matrix.png"
MISTAKES_FILE: Final = "mistakes.png"
_REPORT_FILES: Final = (REPORT_FILE, CONFUSION_FILE, MISTAKES_FILE)
_TOP_K: Final = 5
# What evaluate_model reads from its data: labels, loader, each sample's source, preprocessing.
_Data = tuple[tuple[str, ...], Iterable[Any], list[str] | None, Preprocessing | None]


@dataclass(frozen=True)
class ClassMetrics:
    """Precision, recall and F1 of one class (0.0 where undefined: nothing predicted or true).

    Attributes:
        label: The class name.
        precision: Correct predictions of the class / all predictions of it.
        recall: Correct predictions of the class / its true samples.
        f1: Harmonic mean of precision and recall.
        support: Its true samples.
    """

    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class Mistake:
    """A misclassified sample: ``source`` (a path, or ``"sample <i>"``), true and predicted
    class names, and the probability the model gave its prediction."""

    source: str
    true: str
    predicted: str
    confidence: float


@dataclass(frozen=True)
class EvaluationReport:
    """The evaluation of a model on labelled data.

    Attributes:
        labels: The model's class names, in head order (the matrix's rows and columns).
        samples: Samples evaluated.
        loss: Per-sample mean cross-entropy (as ``vitlib.training.evaluate``).
        accuracy: Fraction classified correctly.
        top_k: The k of ``top_k_accuracy``: 5, or the number of classes if fewer.
        top_k_accuracy: Fraction whose true class is among the k most probable.
        per_class: Precision, recall and F1 of each class.
        confusion_matrix: ``confusion_matrix[true][predicted]`` counts.
        mistakes: The most confident mistakes, most confident first.
        mistake_images: Their prepared images (N, C, H, W), for the picture.
        preprocessing: How the images were prepared (to draw them).
    """

    labels: tuple[str, ...]
    samples: int
    loss: float
    accuracy: float
    top_k: int
    top_k_accuracy: float
    per_class: tuple[ClassMetrics, ...]
    confusion_matrix: tuple[tuple[int, ...], ...]
    mistakes: tuple[Mistake, ...]
    mistake_images: Tensor
    preprocessing: Preprocessing | None

    @property
    def macro_f1(self) -> float:
        """The mean F1 over the classes with samples."""
        present = [metrics.f1 for metrics in self.per_class if metrics.support]
        return sum(present) / len(present) if present else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON values (without the images)."""
        return {
            "samples": self.samples,
            "loss": self.loss,
            "accuracy": self.accuracy,
            "top_k": self.top_k,
            "top_k_accuracy": self.top_k_accuracy,
            "macro_f1": self.macro_f1,
            "labels": list(self.labels),
            "per_class": [asdict(metrics) for metrics in self.per_class],
            "confusion_matrix": [list(row) for row in self.confusion_matrix],
            "most_confident_mistakes": [asdict(mistake) for mistake in self.mistakes],
        }

    def save(self, directory: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write ``report.json``, ``confusion_matrix.png`` and (if there are mistakes)
        ``mistakes.png`` into ``directory``, all at once (the writer of ``save_pretrained``).

        Raises:
            FileExistsError: ``directory`` is not empty and ``overwrite`` is false.
            ImportError: matplotlib is missing (``pip install "vitlib[plots]"``).
        """
        from vitlib.analysis.plots import plot_confusion_matrix, plot_mistakes

        def write(staging: Path) -> None:
            report = self.to_dict()
            plot_confusion_matrix(self.confusion_matrix, self.labels, staging / CONFUSION_FILE)
            report["confusion_matrix_png"] = CONFUSION_FILE
            if self.mistakes:
                spec = self.preprocessing
                index = {label: position for position, label in enumerate(self.labels)}
                plot_mistakes(
                    self.mistake_images,
                    [index[mistake.true] for mistake in self.mistakes],
                    [index[mistake.predicted] for mistake in self.mistakes],
                    [mistake.confidence for mistake in self.mistakes],
                    self.labels,
                    staging / MISTAKES_FILE,
                    mean=spec.mean if spec is not None else None,
                    std=spec.std if spec is not None else None,
                )
                report["mistakes_png"] = MISTAKES_FILE
            dump_json(report, staging / REPORT_FILE)

        return write_files(
            directory, write, overwrite=overwrite, what="evaluate", owned=_REPORT_FILES
        )

    def summary(self) -> str:
        """A table for people: the headline numbers, then precision, recall and F1 per class."""
        width = max(len("class"), *(len(label) for label in self.labels))
        lines = [
            f"{self.samples} samples: accuracy {self.accuracy:.4f}, top-{self.top_k} "
            f"{self.top_k_accuracy:.4f}, loss {self.loss:.4f}, macro F1 {self.macro_f1:.4f}",
            f"{'class':<{width}}  precision  recall  f1      support",
        ]
        for metrics in self.per_class:
            lines.append(
                f"{metrics.label:<{width}}  {metrics.precision:9.4f}  {metrics.recall:6.4f}  "
                f"{metrics.f1:6.4f}  {metrics.support:7d}"
            )
        return "\n".join(lines)


def evaluate_model(
    model: ViT | str | os.PathLike[str],
    data: str | os.PathLike[str] | DataLoader[Any] | Iterable[Any],
    *,
    batch_size: int = 64,
    max_mistakes: int = 16,
    strict: bool = False,
    device: torch.device | str | None = None,
) -> EvaluationReport:
    """Evaluate a trained model on labelled data: accuracy, top-5, per-class P/R/F1, confusion.

    Args:
        model: A [`ViT`][vitlib.ViT], or anything [`load_pretrained`][vitlib.load_pretrained]
            reads (a run directory evaluates its ``best/``).
        data: ``"digits"`` (the digits test split, at the model's input size); a folder of class
            folders (``DIR/<class>/<images>``, or ``DIR/test/<class>/...``), whose class names
            are matched to the model's labels by name and whose images are prepared by the
            model's recorded preprocessing; or a loader of ``(images, labels)`` batches,
            already prepared, with the model's class indices.
        batch_size: Images per forward pass (folders and digits).
        max_mistakes: How many of the most confident mistakes to keep.
        strict: Refuse a folder with unreadable images instead of skipping them (with a
            warning).
        device: Where to run; default the model's device.

    Returns:
        The [`EvaluationReport`][vitlib.EvaluationReport]; ``.save(folder)`` writes it with its
        pictures.

    Raises:
        DataError: A folder class the model does not know, labels out of range, or no
            samples.
        FileNotFoundError: The folder does not exist.
    """
    vit = resolve_model(model)
    check_non_negative_int("max_mistakes", max_mistakes)
    labels, loader, sources, spec = _data(vit, data, batch_size=batch_size, strict=strict)
    tally = _ReportTally(vit.config.num_classes, max_mistakes)
    result = evaluate(vit, loader, device=resolve_device(vit, device), on_batch=tally.add)
    mistakes = tuple(
        Mistake(_source(sources, index), labels[true], labels[guess], confidence)
        for confidence, index, true, guess, _ in tally.kept
    )
    images_kept = torch.stack([item[4] for item in tally.kept]) if tally.kept else torch.empty(0)
    confusion = tally.confusion_matrix()
    return EvaluationReport(
        labels=labels,
        samples=result.samples,
        loss=result.loss,
        accuracy=result.accuracy,
        top_k=tally.top_k,
        top_k_accuracy=tally.in_top_k / result.samples,
        per_class=_per_class(confusion, labels),
        confusion_matrix=tuple(tuple(row) for row in confusion.tolist()),
        mistakes=mistakes,
        mistake_images=images_kept,
        preprocessing=spec,
    )


class _ReportTally:
    """What the report adds to the evaluation loop's loss and accuracy, batch by batch: top-k
    hits, the confusion counts and the most confident mistakes (with their images)."""

    def __init__(self, classes: int, max_mistakes: int) -> None:
        self.classes = classes
        self.top_k = min(_TOP_K, classes)
        self.max_mistakes = max_mistakes
        self.in_top_k = 0
        self.samples = 0
        self.pairs: dict[tuple[int, int], int] = {}
        self.kept: list[tuple[float, int, int, int, Tensor]] = []  # confidence, index, true, guess

    def add(self, images: Tensor, targets: Tensor, logits: Tensor) -> None:
        """Count one batch (``BatchObserver`` of the evaluation loop)."""
        probabilities = logits.float().softmax(dim=-1)
        confidence, predicted = probabilities.max(dim=-1)
        top = probabilities.topk(self.top_k, dim=-1).indices
        self.in_top_k += int((top == targets[:, None]).any(dim=-1).sum().item())
        pairs, counts = torch.unique(
            torch.stack([targets, predicted], dim=1).cpu(), dim=0, return_counts=True
        )
        for (true, guess), count in zip(pairs.tolist(), counts.tolist(), strict=True):
            self.pairs[(true, guess)] = self.pairs.get((true, guess), 0) + count
        for i in (predicted != targets).nonzero().flatten().tolist():
            mistake = (float(confidence[i]), self.samples + i, int(targets[i]), int(predicted[i]))
            self.kept.append((*mistake, images[i].detach().cpu()))
        self.kept = sorted(self.kept, key=lambda item: (-item[0], item[1]))[: self.max_mistakes]
        self.samples += len(targets)

    def confusion_matrix(self) -> Tensor:
        """``[true][predicted]`` counts, ``(classes, classes)``."""
        matrix = torch.zeros(self.classes, self.classes, dtype=torch.int64)
        for (true, guess), count in self.pairs.items():
            matrix[true, guess] = count
        return matrix


def _source(sources: Sequence[str] | None, index: int) -> str:
    return sources[index] if sources is not None else f"sample {index}"


def _per_class(confusion: Tensor, labels: Sequence[str]) -> tuple[ClassMetrics, ...]:
    counts = confusion.double()
    true_positives = counts.diag()
    predicted = counts.sum(dim=0)
    support = counts.sum(dim=1)
    metrics = []
    for index, label in enumerate(labels):
        hits = float(true_positives[index])
        precision = hits / float(predicted[index]) if predicted[index] else 0.0
        recall = hits / float(support[index]) if support[index] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        metrics.append(ClassMetrics(label, precision, recall, f1, int(support[index])))
    return tuple(metrics)


def _data(
    model: ViT,
    data: str | os.PathLike[str] | DataLoader[Any] | Iterable[Any],
    *,
    batch_size: int,
    strict: bool,
) -> _Data:
    """``(labels, loader, sample sources, preprocessing)`` for ``data``."""
    check_positive_int("batch_size", batch_size)
    recorded = model_metadata(model)
    classes = model.config.num_classes
    if data == "digits":
        return _digits(model, batch_size)
    if isinstance(data, (str, os.PathLike)):
        return _folder(model, Path(data), batch_size=batch_size, strict=strict)
    labels = recorded.labels or tuple(str(index) for index in range(classes))
    return labels, data, None, recorded.preprocessing


def _digits(model: ViT, batch_size: int) -> _Data:
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


def _folder(model: ViT, root: Path, *, batch_size: int, strict: bool) -> _Data:
    from vitlib.data.image_folder import ImageFolderDataset

    if (root / "test").is_dir() and (root / "train").is_dir():
        root = root / "test"  # the layout vitlib train reads: evaluate on its test split
    metadata = model_metadata(model)
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
    unknown = [name for name in folder.classes if name not in labels]
    if unknown:
        raise DataError(
            f"{root} has class folders {unknown} that the model does not know; expected "
            f"folders named after its classes {list(labels)}. Rename or remove them."
        )
    mapping = [labels.index(name) for name in folder.classes]
    loader = DataLoader(_Relabelled(folder, mapping), batch_size=batch_size, shuffle=False)
    sources = [str(path) for path, _ in folder.samples]
    return tuple(labels), loader, sources, spec
