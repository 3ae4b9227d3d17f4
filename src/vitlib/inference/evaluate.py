"""`evaluate_model`: how well a saved model does on labelled data, class by class.

```python
report = vitlib.evaluate_model("runs/sports", "data/my_photos")   # a folder of class folders
report.accuracy, report.top_k_accuracy, report.per_class[0].f1
report.save("runs/sports/evaluation")   # report.json, confusion_matrix.png, mistakes.png
```

Loss and accuracy are those of [`vitlib.training.evaluate`][vitlib.training.evaluate] (the
per-epoch check of ``fit``) on the same loader; this adds top-k accuracy, per-class precision,
recall and F1, the confusion counts and the most confident mistakes. The report costs what the
classes present cost, not the head's size squared: a 21k-class head evaluated on a few images
gives a report of a few kilobytes.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from vitlib._checks import check_bool, check_non_negative_int
from vitlib._runtime import resolve_device
from vitlib.data.preprocessing import Preprocessing
from vitlib.files import dump_json, write_files
from vitlib.inference.labelled_data import data_caveat, labelled_data
from vitlib.inference.optimize import Precision, at_precision
from vitlib.inference.predict import resolve_model
from vitlib.training.engine import evaluate
from vitlib.vit import ViT

__all__ = ["ClassMetrics", "ConfusionCount", "EvaluationReport", "Mistake", "evaluate_model"]

REPORT_FILE: Final = "report.json"
CONFUSION_FILE: Final = "confusion_matrix.png"
MISTAKES_FILE: Final = "mistakes.png"
_REPORT_FILES: Final = (REPORT_FILE, CONFUSION_FILE, MISTAKES_FILE)
_TOP_K: Final = 5
# What evaluate_model reads from its data: labels, loader, each sample's source, preprocessing.


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
class ConfusionCount:
    """One non-zero cell of the confusion matrix: ``count`` samples of class ``true`` were
    predicted as ``predicted`` (the same name for the correct ones)."""

    true: str
    predicted: str
    count: int


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

    Only the classes present (with true samples or predictions) are listed, so the report's
    size follows the data, not the head: a 10,000-class head evaluated on 2 images lists at most
    4 classes and 2 confusion counts.

    Attributes:
        labels: All the model's class names, in head order.
        samples: Samples evaluated.
        loss: Per-sample mean cross-entropy (as ``vitlib.training.evaluate``).
        accuracy: Fraction classified correctly.
        top_k: The k of ``top_k_accuracy``: 5; ``None`` when the model has 5 classes or fewer,
            since the true class is then always among the k most probable (top-k accuracy 1.0
            by construction, which tells nothing).
        top_k_accuracy: Fraction whose true class is among the k most probable; ``None`` with
            ``top_k``.
        per_class: Precision, recall and F1 of each class present (with true samples or
            predictions), in head order. A class with neither is left out: it has no precision,
            recall or F1 to give (read it as support 0 and nothing predicted).
        confusion: The non-zero cells of the confusion matrix, by true class then predicted
            class in head order; ``confusion_matrix`` lays them out as a matrix.
        mistakes: The most confident mistakes, most confident first.
        mistake_images: Their prepared images (N, C, H, W), for the picture.
        preprocessing: How the images were prepared (to draw them).
        caveat: Why these numbers flatter the model, when the data evaluated chose it or
            trained it: the run (its ``settings.json``) records that its best epoch was chosen
            on these images, or that it was trained on them. ``None`` when it records neither
            (or the model is no run folder's, which records nothing).
    """

    labels: tuple[str, ...]
    samples: int
    loss: float
    accuracy: float
    top_k: int | None
    top_k_accuracy: float | None
    per_class: tuple[ClassMetrics, ...]
    confusion: tuple[ConfusionCount, ...]
    mistakes: tuple[Mistake, ...]
    mistake_images: Tensor
    preprocessing: Preprocessing | None
    caveat: str | None = None

    @property
    def present_labels(self) -> tuple[str, ...]:
        """The classes with true samples or predictions, in head order (those of
        ``per_class``, and the rows and columns of ``confusion_matrix``)."""
        return tuple(metrics.label for metrics in self.per_class)

    @property
    def confusion_matrix(self) -> tuple[tuple[int, ...], ...]:
        """``confusion_matrix[true][predicted]`` counts over ``present_labels``: a P x P
        matrix for the P classes present, built from ``confusion`` on each access."""
        position = {label: index for index, label in enumerate(self.present_labels)}
        rows = [[0] * len(position) for _ in position]
        for cell in self.confusion:
            rows[position[cell.true]][position[cell.predicted]] = cell.count
        return tuple(tuple(row) for row in rows)

    @property
    def macro_f1(self) -> float:
        """The mean F1 over the classes with samples."""
        present = [metrics.f1 for metrics in self.per_class if metrics.support]
        return sum(present) / len(present) if present else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON values (without the images): the headline numbers, the head's
        ``num_classes``, ``per_class`` and ``confusion`` over the classes present, and the most
        confident mistakes."""
        return {
            "samples": self.samples,
            "loss": self.loss,
            "accuracy": self.accuracy,
            "top_k": self.top_k,
            "top_k_accuracy": self.top_k_accuracy,
            "macro_f1": self.macro_f1,
            "num_classes": len(self.labels),
            "per_class": [asdict(metrics) for metrics in self.per_class],
            "confusion": [asdict(cell) for cell in self.confusion],
            "most_confident_mistakes": [asdict(mistake) for mistake in self.mistakes],
            "caveat": self.caveat,
        }

    def save(self, directory: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write ``report.json``, ``confusion_matrix.png`` and (if there are mistakes)
        ``mistakes.png`` into ``directory``, all at once (the writer of ``save_pretrained``).

        The confusion picture shows the classes present; above
        [`MAX_CONFUSION_CLASSES`][vitlib.analysis.plots.MAX_CONFUSION_CLASSES] of them it is not
        drawn (unreadable, and slow): one warning says so, and ``report.json`` gives the reason
        under ``confusion_matrix_png_skipped``. Report files of an earlier save that this one
        does not write are removed.

        Raises:
            FileExistsError: ``directory`` is not empty and ``overwrite`` is false.
            InputTypeError: ``overwrite`` is not a bool.
            ImportError: matplotlib is missing (``pip install "vitlib[plots]"``).
        """
        from vitlib.analysis.plots import MAX_CONFUSION_CLASSES

        check_bool("overwrite", overwrite)
        skipped = None
        if len(self.per_class) > MAX_CONFUSION_CLASSES:
            skipped = (
                f"{len(self.per_class)} classes are present, more than the "
                f"{MAX_CONFUSION_CLASSES} a confusion picture shows legibly; the counts are in "
                "'confusion'"
            )
            warnings.warn(f"{CONFUSION_FILE} not drawn: {skipped}", stacklevel=2)

        def write(staging: Path) -> None:
            report = self.to_dict()
            if skipped is None:
                report["confusion_matrix_png"] = self._draw_confusion(staging / CONFUSION_FILE)
            else:
                report["confusion_matrix_png_skipped"] = skipped
            if self.mistakes:
                report["mistakes_png"] = self._draw_mistakes(staging / MISTAKES_FILE)
            dump_json(report, staging / REPORT_FILE)

        return write_files(
            directory, write, overwrite=overwrite, what="evaluate", owned=_REPORT_FILES
        )

    def _draw_confusion(self, path: Path) -> str:
        from vitlib.analysis.plots import plot_confusion_matrix

        plot_confusion_matrix(self.confusion_matrix, self.present_labels, path)
        return path.name

    def _draw_mistakes(self, path: Path) -> str:
        from vitlib.analysis.plots import plot_mistakes

        spec = self.preprocessing
        index = {label: position for position, label in enumerate(self.labels)}
        plot_mistakes(
            self.mistake_images,
            [index[mistake.true] for mistake in self.mistakes],
            [index[mistake.predicted] for mistake in self.mistakes],
            [mistake.confidence for mistake in self.mistakes],
            self.labels,
            path,
            mean=spec.mean if spec is not None else None,
            std=spec.std if spec is not None else None,
        )
        return path.name

    def summary(self) -> str:
        """A table for people: the headline numbers, then precision, recall and F1 of each
        class present."""
        width = max(len("class"), *(len(metrics.label) for metrics in self.per_class))
        top_k = (
            ""
            if self.top_k is None or self.top_k_accuracy is None
            else f", top-{self.top_k} {self.top_k_accuracy:.4f}"
        )
        lines = [] if self.caveat is None else [f"note: {self.caveat}"]
        lines += [
            f"{self.samples} samples: accuracy {self.accuracy:.4f}{top_k}, loss {self.loss:.4f}, "
            f"macro F1 {self.macro_f1:.4f}",
            f"{len(self.per_class)} of the model's {len(self.labels)} classes have samples or "
            "predictions:",
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
    data: str | os.PathLike[str] | DataLoader[Any] | Dataset[Any] | Iterable[Any],
    *,
    batch_size: int = 64,
    max_mistakes: int = 16,
    strict: bool = False,
    device: torch.device | str | None = None,
    precision: Precision | None = None,
    progress: bool = False,
    num_workers: int | None = None,
) -> EvaluationReport:
    """Evaluate a trained model on labelled data: accuracy, top-5, per-class P/R/F1, confusion.

    Top-5 accuracy is left out (``None``) for a model of 5 classes or fewer: it is 1.0 there by
    construction. When ``model`` is a run folder (or its ``best/`` or ``last/``) whose
    ``settings.json`` records that ``data`` chose its best epoch (its validation split, or the
    test split of a run made with ``--val-split 0``) or trained it, the report's ``caveat`` says
    so: those numbers are optimistic.

    Args:
        model: A [`ViT`][vitlib.ViT], or anything [`load_pretrained`][vitlib.load_pretrained]
            reads (a run directory evaluates its ``best/``).
        data: ``"digits"`` (the digits test split, at the model's input size); a folder of class
            folders (``DIR/<class>/<images>``), or of splits (``DIR/test/<class>/...``, with or
            without ``DIR/train/``: its ``test/`` is evaluated), whose class names are matched
            to the model's labels by name and whose images are prepared by the model's
            recorded preprocessing; or a loader of ``(images, labels)`` batches (or a
            ``Dataset`` of ``(image, label)`` samples, batched by ``batch_size``), already
            prepared, with the model's class indices.
        batch_size: Images per forward pass (folders and digits).
        max_mistakes: How many of the most confident mistakes to keep.
        strict: Refuse a folder with unreadable images instead of skipping them (with a
            warning).
        device: Where to run; default the model's device.
        precision: ``None`` runs the model as it is; ``"fp32"``, ``"bf16"`` or ``"int8"`` run
            its [`optimize_for_inference`][vitlib.optimize_for_inference] copy (on the CPU).
        progress: Show a bar with the images done, images/s and the time left (on a terminal,
            with tqdm; nothing in a log).
        num_workers: Processes that decode a folder's images while the model runs; ``None``
            lets [`decode_workers`][vitlib.data.loaders.decode_workers] choose (none for one
            batch, else one per CPU, up to 4); ``0`` decodes in this process.

    Returns:
        The [`EvaluationReport`][vitlib.EvaluationReport]; ``.save(folder)`` writes it with its
        pictures.

    Raises:
        DataError: A folder class the model does not know, labels out of range, or no
            samples.
        FileNotFoundError: The folder does not exist.
        InputTypeError: ``data`` is none of the kinds above, or ``strict`` is not a bool.
        NonFiniteEvalLossError: The model's outputs gave a NaN or infinite loss (as in
            ``fit``): no report is made from them.
        ConfigError: ``precision`` is not one of its values, or is given for a GPU;
            ``num_workers`` negative or over ``max_num_workers``.
    """
    vit = resolve_model(model)
    check_non_negative_int("max_mistakes", max_mistakes)
    check_bool("strict", strict)
    labels, loader, sources, spec = labelled_data(
        vit, data, batch_size=batch_size, strict=strict, num_workers=num_workers
    )
    caveat = data_caveat(model, data, labels)
    tally = _ReportTally(vit.config.num_classes, max_mistakes)
    target = resolve_device(vit, device)
    forward = at_precision(vit, precision, target)
    result = evaluate(forward, loader, device=target, on_batch=tally.add, progress=progress)
    mistakes = tuple(
        Mistake(_source(sources, index), labels[true], labels[guess], confidence)
        for confidence, index, true, guess, _ in tally.kept
    )
    images_kept = torch.stack([item[4] for item in tally.kept]) if tally.kept else torch.empty(0)
    return EvaluationReport(
        labels=labels,
        samples=result.samples,
        loss=result.loss,
        accuracy=result.accuracy,
        top_k=tally.top_k,
        top_k_accuracy=None if tally.top_k is None else tally.in_top_k / result.samples,
        per_class=_per_class(tally.pairs, labels),
        confusion=tuple(
            ConfusionCount(labels[true], labels[guess], count)
            for (true, guess), count in sorted(tally.pairs.items())
        ),
        mistakes=mistakes,
        mistake_images=images_kept,
        preprocessing=spec,
        caveat=caveat,
    )


class _ReportTally:
    """What the report adds to the evaluation loop's loss and accuracy, batch by batch: top-k
    hits, the confusion counts (only the pairs that occur) and the most confident mistakes
    (with their images)."""

    def __init__(self, classes: int, max_mistakes: int) -> None:
        self.top_k = _TOP_K if classes > _TOP_K else None  # else every class is in the top k
        self.max_mistakes = max_mistakes
        self.in_top_k = 0
        self.samples = 0
        self.pairs: Counter[tuple[int, int]] = Counter()  # (true, predicted) -> count
        self.kept: list[tuple[float, int, int, int, Tensor]] = []  # confidence, index, true, guess

    def add(self, images: Tensor, targets: Tensor, logits: Tensor) -> None:
        """Count one batch (``BatchObserver`` of the evaluation loop)."""
        probabilities = logits.float().softmax(dim=-1)
        confidence, predicted = probabilities.max(dim=-1)
        if self.top_k is not None:
            top = probabilities.topk(self.top_k, dim=-1).indices
            self.in_top_k += int((top == targets[:, None]).any(dim=-1).sum().item())
        pairs, counts = torch.unique(
            torch.stack([targets, predicted], dim=1).cpu(), dim=0, return_counts=True
        )
        for (true, guess), count in zip(pairs.tolist(), counts.tolist(), strict=True):
            self.pairs[(true, guess)] += count
        candidates = self.kept + [
            (float(confidence[i]), self.samples + i, int(targets[i]), int(predicted[i]), images[i])
            for i in (predicted != targets).nonzero().flatten().tolist()
        ]
        candidates.sort(key=lambda item: (-item[0], item[1]))
        # A kept image is copied out of its batch: a view would keep the whole batch alive, and
        # up to max_mistakes batches with it (memory growing with the number of images).
        self.kept = [
            item if item[1] < self.samples else (*item[:4], item[4].detach().cpu().clone())
            for item in candidates[: self.max_mistakes]
        ]
        self.samples += len(targets)


def _source(sources: Sequence[str] | None, index: int) -> str:
    return sources[index] if sources is not None else f"sample {index}"


def _per_class(
    pairs: Mapping[tuple[int, int], int], labels: Sequence[str]
) -> tuple[ClassMetrics, ...]:
    """The metrics of every class with true samples or predictions, in head order."""
    hits: Counter[int] = Counter()
    support: Counter[int] = Counter()
    predicted: Counter[int] = Counter()
    for (true, guess), count in pairs.items():
        support[true] += count
        predicted[guess] += count
        if true == guess:
            hits[true] += count
    metrics = []
    for index in sorted(support.keys() | predicted.keys()):
        precision = hits[index] / predicted[index] if predicted[index] else 0.0
        recall = hits[index] / support[index] if support[index] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        metrics.append(ClassMetrics(labels[index], precision, recall, f1, support[index]))
    return tuple(metrics)
