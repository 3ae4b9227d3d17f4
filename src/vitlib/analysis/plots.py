"""PNG plots of a training run and an evaluation: loss/accuracy curves, grids of predictions and
mistakes, the confusion matrix; and the drawing helpers every picture of `vitlib.analysis` uses.

Every picture function of `vitlib.analysis` keeps one contract, stated here once: it writes a
PNG to ``path`` (which must end in ``.png``; missing parent folders are created) through the one
atomic writer, returns that path, refuses to replace an existing file unless ``overwrite=True``
(``FileExistsError``), refuses bad arguments with ``ConfigError`` or ``InputTypeError`` before
drawing anything, and needs matplotlib (``pip install "vitlib[plots]"``, else
``MissingExtraError``). Images are ``(B, C, H, W)`` with C = 1 (drawn grey) or 3; ``mean`` and
``std``, given together, undo the normalisation they were made with; without them images in
[0, 1] are drawn as they are and others min-max scaled per image; values are clipped to [0, 1].

The figures are drawn on a bare ``matplotlib.figure.Figure`` (Agg), never through ``pyplot``: no
display needed, pyplot's global state untouched, safe from threads and headless servers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import torch
from torch import Tensor

from vitlib._checks import check_bool, check_positive_int, check_type
from vitlib._optional import missing_extra
from vitlib.analysis import check_batch_not_empty
from vitlib.errors import ConfigError, InputTypeError
from vitlib.files import write_files

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

HISTORY_KEYS: Final = ("train_loss", "train_acc", "val_loss", "val_acc")
"""The keys ``plot_history`` reads: one float per epoch each (an earlier vitlib's history names
the last two ``test_loss`` and ``test_acc``)."""

MAX_CONFUSION_CLASSES: Final = 100
"""The most classes (present, with samples or predictions) ``plot_confusion_matrix`` draws."""

_CORRECT_COLOUR: Final = "green"
_WRONG_COLOUR: Final = "red"
_CELL_INCHES: Final = 2.0


def plot_history(
    history: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> Path:
    """Save loss and accuracy curves per epoch, training and validation, side by side as a PNG,
    with the final test as one point at the epoch it tested.

    The validation curves are labelled "validation", or "test (chose best/)" for a run that chose
    its best epoch on the test split (``val_name="test"``, and the histories of an earlier
    vitlib, whose ``test_loss`` and ``test_acc`` are read as such).

    Args:
        history: [`History.as_dict`][vitlib.History.as_dict] output (or its
            ``history.json``): ``train_loss``, ``train_acc``, ``val_loss`` and ``val_acc``,
            each a non-empty sequence of floats, all of one length (the number of epochs);
            optionally ``val_name`` and ``test`` (``{"loss", "acc", "epoch", ...}``). Other keys
            are ignored.

    Examples:
        >>> history = {"train_loss": [1.2, 0.8], "train_acc": [0.5, 0.7],
        ...            "val_loss": [1.0, 0.9], "val_acc": [0.6, 0.65],
        ...            "test": {"loss": 0.95, "acc": 0.62, "epoch": 2, "samples": 100}}
        >>> plot_history(history, "runs/history.png", overwrite=True)
        PosixPath('runs/history.png')
    """
    curves, val_label, test = _check_history(history)
    out = check_png_path(path, overwrite)
    figure = new_figure(width=10.0, height=4.0)
    from matplotlib.ticker import MaxNLocator

    epochs = range(1, len(curves["train_loss"]) + 1)
    loss_axes, acc_axes = figure.subplots(1, 2)
    for axes, metric, title in ((loss_axes, "loss", "Loss"), (acc_axes, "acc", "Accuracy")):
        axes.plot(epochs, curves[f"train_{metric}"], marker="o", label="train")
        axes.plot(epochs, curves[f"val_{metric}"], marker="o", label=val_label)
        if test is not None:
            epoch = int(test["epoch"])
            axes.plot(
                [epoch], [float(test[metric])], marker="*", markersize=14, linestyle="none",
                color="black", label=f"test, once (epoch {epoch}'s weights)",
            )  # fmt: skip
        axes.set_title(title)
        axes.set_xlabel("epoch")
        axes.set_ylabel(title.lower())
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
        axes.legend()
    return save_figure(figure, out, overwrite=overwrite)


def plot_predictions(
    images: Tensor,
    labels: Sequence[int] | Tensor,
    predictions: Sequence[int] | Tensor,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    max_images: int = 16,
    overwrite: bool = False,
) -> Path:
    """Save a grid of images titled ``"predicted / true"``, green when right and red when wrong.

    Args:
        images: Float tensor (B, C, H, W) with C = 1 (shown grey) or 3 (RGB).
        labels: B true class indices.
        predictions: B predicted class indices.
        class_names: Name of each class index.
        max_images: Draw at most this many images, the first ones.

    """
    shown = displayable(images, mean, std)
    true_labels = _check_labels("labels", labels, len(images), len(class_names))
    predicted = _check_labels("predictions", predictions, len(images), len(class_names))
    count = min(len(shown), check_positive_int("max_images", max_images))
    pairs = list(zip(predicted[:count], true_labels[:count], strict=True))
    titles = [f"{class_names[guess]} / {class_names[truth]}" for guess, truth in pairs]
    colours = [_CORRECT_COLOUR if guess == truth else _WRONG_COLOUR for guess, truth in pairs]
    return _image_grid(shown[:count], titles, colours, path, "predicted / true", overwrite)


def plot_image_predictions(
    images: Tensor,
    labels: Sequence[str],
    probabilities: Sequence[float],
    path: str | os.PathLike[str],
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    overwrite: bool = False,
) -> Path:
    """Save each image titled with its predicted class and probability, as the chapter's
    ``pred_and_plot_image`` does (``"basketball (93.1%)"``), in a grid.

    Args:
        images: Float tensor (B, C, H, W), C = 1 or 3, as the model received them.
        labels: B predicted class names.
        probabilities: B probabilities of those classes, in [0, 1].
    """
    shown = displayable(images, mean, std)
    _check_count("labels", labels, len(shown))
    _check_count("probabilities", probabilities, len(shown))
    titles = [
        f"{label} ({100 * float(p):.1f}%)" for label, p in zip(labels, probabilities, strict=True)
    ]
    return _image_grid(shown, titles, ["black"] * len(shown), path, "prediction", overwrite)


def plot_mistakes(
    images: Tensor,
    labels: Sequence[int] | Tensor,
    predictions: Sequence[int] | Tensor,
    confidences: Sequence[float],
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    overwrite: bool = False,
) -> Path:
    """Save a grid of misclassified images, each titled ``"predicted (p%) / true"`` in red.

    [`vitlib.evaluate_model`][vitlib.evaluate_model] draws its most confident mistakes with it.

    Args:
        images: Float tensor (B, C, H, W), C = 1 or 3, as the model received them.
        labels: B true class indices.
        predictions: B predicted class indices.
        confidences: B probabilities the model gave its predictions.
        class_names: Name of each class index.
    """
    shown = displayable(images, mean, std)
    true_labels = _check_labels("labels", labels, len(shown), len(class_names))
    predicted = _check_labels("predictions", predictions, len(shown), len(class_names))
    _check_count("confidences", confidences, len(shown))
    titles = [
        f"{class_names[guess]} ({100 * float(p):.0f}%) / {class_names[truth]}"
        for guess, p, truth in zip(predicted, confidences, true_labels, strict=True)
    ]
    suptitle = "most confident mistakes: predicted (probability) / true"
    return _image_grid(shown, titles, [_WRONG_COLOUR] * len(shown), path, suptitle, overwrite)


def plot_confusion_matrix(
    matrix: Tensor | Sequence[Sequence[int]],
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> Path:
    """Save a confusion matrix as a PNG: rows are true classes, columns predicted ones.

    Only the classes present are drawn: a class whose row and column are all zero (no true
    samples, never predicted) is left out. Each cell shows its count (up to 30 classes); the
    colour is the fraction of its row (the recall of the diagonal), so rare classes are as
    visible as common ones. More than
    [`MAX_CONFUSION_CLASSES`][vitlib.analysis.plots.MAX_CONFUSION_CLASSES] classes present are
    refused: such a picture is unreadable and slow to draw.

    Args:
        matrix: Square counts, ``matrix[true][predicted]``, one row per class.
        class_names: Name of each class index.

    Raises:
        ConfigError: ``matrix`` is not square non-negative whole counts, one row per class
            name; it holds no counts, or more than ``MAX_CONFUSION_CLASSES`` classes are
            present; or ``path`` does not end in ``.png``.
    """
    try:
        counts = torch.as_tensor(matrix, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ConfigError(
            f"matrix must be square counts, a tensor or rows of ints of one length; the "
            f"{type(matrix).__name__} given is not ({error}). Pass matrix[true][predicted] counts"
        ) from error
    classes = len(class_names)
    whole = torch.isfinite(counts) & (counts >= 0) & (counts == counts.round())
    if counts.shape != (classes, classes) or not bool(whole.all()):
        raise ConfigError(
            f"matrix must be {classes} x {classes} non-negative whole counts (one row and column "
            f"per class name), got shape {tuple(counts.shape)}"
        )
    present = ((counts.sum(dim=0) + counts.sum(dim=1)) > 0).nonzero().flatten()
    if len(present) == 0:
        raise ConfigError("matrix holds no counts (all zero); there is nothing to draw")
    if len(present) > MAX_CONFUSION_CLASSES:
        raise ConfigError(
            f"the confusion matrix has {len(present)} classes present (with samples or "
            f"predictions), more than the {MAX_CONFUSION_CLASSES} a picture shows legibly; draw "
            "a subset (e.g. the most confused classes: matrix[rows][:, rows] and their names)"
        )
    out = check_png_path(path, overwrite)
    counts = counts[present][:, present]
    names = [str(class_names[index]) for index in present.tolist()]
    _draw_confusion(counts, names, out, overwrite)
    return out


def _draw_confusion(counts: Tensor, names: Sequence[str], out: Path, overwrite: bool) -> None:
    classes = len(names)
    side = min(24.0, 2.0 + 0.6 * classes)
    figure = new_figure(width=side + 1.5, height=side)
    axes = figure.add_subplot(1, 1, 1)
    fractions = counts / counts.sum(dim=1, keepdim=True).clamp_min(1.0)
    picture = axes.imshow(fractions.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(picture, ax=axes, fraction=0.046, pad=0.04, label="fraction of the true class")
    axes.set_xticks(range(classes), labels=names, rotation=45, ha="right")
    axes.set_yticks(range(classes), labels=names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if classes <= 30:  # beyond that the numbers no longer fit their cells
        for row in range(classes):
            for column in range(classes):
                colour = "white" if fractions[row, column] > 0.5 else "black"
                count = f"{int(counts[row, column])}"
                axes.text(column, row, count, ha="center", va="center", color=colour, fontsize=8)
    axes.set_title("confusion matrix")
    save_figure(figure, out, overwrite=overwrite)


def _image_grid(
    shown: Tensor,
    titles: Sequence[str],
    colours: Sequence[str],
    path: str | os.PathLike[str],
    suptitle: str,
    overwrite: bool,
) -> Path:
    out = check_png_path(path, overwrite)
    count = len(shown)
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    # At least 5 inches wide, so that the title fits above one or two images.
    width = max(5.0, _CELL_INCHES * columns + 0.5)
    figure = new_figure(width=width, height=_CELL_INCHES * rows + 0.4)
    for index in range(count):
        axes = figure.add_subplot(rows, columns, index + 1)
        draw_image(axes, shown[index])
        axes.set_title(titles[index], color=colours[index], fontsize=8)
    figure.suptitle(suptitle, fontsize=11)
    return save_figure(figure, out, overwrite=overwrite)


def _check_count(name: str, values: Sequence[object], count: int) -> None:
    if len(values) != count:
        raise ConfigError(
            f"{name} has {len(values)} entries for {count} images; give one per image"
        )


def new_figure(*, width: float, height: float) -> Figure:
    """A bare ``Figure`` (Agg, no pyplot) of ``width x height`` inches at 100 dpi.

    Raises:
        MissingExtraError: matplotlib is not installed (``pip install "vitlib[plots]"``).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as error:
        raise missing_extra("matplotlib", "plots", "Plotting") from error
    return Figure(figsize=(width, height), dpi=100)


def check_png_path(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """``path`` as a ``Path``, refused before any drawing unless it ends in ``.png`` and (without
    ``overwrite``) is free; ``overwrite`` must be a bool (``"no"`` is not)."""
    check_bool("overwrite", overwrite)
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"plots are saved as PNG, got path {out}; give a path ending in .png")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass overwrite=True to replace it")
    return out


def save_figure(figure: Figure, path: Path, *, overwrite: bool, crop: bool = False) -> Path:
    """Lay out ``figure`` (or, with ``crop``, cut the saved picture to what is drawn) and write
    it to ``path`` as a PNG through the one atomic writer (missing parent folders are created);
    return ``path``."""
    if not crop:
        figure.tight_layout()
    bbox = "tight" if crop else None
    write_files(
        path.parent,
        lambda staging: figure.savefig(staging / path.name, format="png", bbox_inches=bbox),
        overwrite=overwrite,
        what="plot",
        exclusive=False,
    )
    return path


def draw_image(axes: Axes, image: Tensor, interpolation: str | None = None) -> None:
    """Show a displayable (C, H, W) image on ``axes``: grey for one channel, RGB for three."""
    if image.shape[0] == 1:
        axes.imshow(image[0].numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation=interpolation)
    else:
        axes.imshow(image.permute(1, 2, 0).numpy(), interpolation=interpolation)
    axes.axis("off")


def _check_history(
    history: Mapping[str, Any],
) -> tuple[dict[str, list[float]], str, Mapping[str, Any] | None]:
    """The curves of ``history`` by `HISTORY_KEYS`, the label of the validation curves, and the
    final test (``None`` if there is none)."""
    check_type("history", history, Mapping, "a mapping of per-epoch lists (History.as_dict())")
    earlier = "val_acc" not in history and "test_acc" in history  # an earlier vitlib's names
    names = {key: key.replace("val_", "test_") if earlier else key for key in HISTORY_KEYS}
    missing = [key for key in HISTORY_KEYS if names[key] not in history]
    if missing:
        raise ConfigError(
            f"history lacks {missing}; it needs {list(HISTORY_KEYS)}, one float per epoch each, "
            f"got keys {sorted(history)}"
        )
    curves: dict[str, list[float]] = {}
    for key in HISTORY_KEYS:
        try:
            curves[key] = [float(value) for value in history[names[key]]]
        except (TypeError, ValueError) as error:
            raise InputTypeError(
                f"history[{names[key]!r}] must be a sequence of floats, got {history[names[key]]!r}"
            ) from error
    lengths = {key: len(values) for key, values in curves.items()}
    if len(set(lengths.values())) != 1:
        raise ConfigError(f"history sequences must have one length (epochs), got lengths {lengths}")
    if lengths["train_loss"] == 0:
        raise ConfigError("history is empty (0 epochs); plot after at least one epoch")
    chose_on_test = earlier or history.get("val_name") == "test"
    return curves, "test (chose best/)" if chose_on_test else "validation", _final_test(history)


def _final_test(history: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``history["test"]``, checked: ``loss``, ``acc`` and an ``epoch`` of the curves."""
    test = history.get("test")
    if test is None:
        return None
    epochs = len(history["train_loss"])
    try:
        valid = isinstance(test, Mapping) and 1 <= int(test["epoch"]) <= epochs
        valid = valid and all(math.isfinite(float(test[key])) for key in ("loss", "acc"))
    except (KeyError, TypeError, ValueError):
        valid = False
    if not valid:
        raise ConfigError(
            f"history['test'] must be the final test, a mapping with a finite loss and acc "
            f"and an epoch from 1 to {epochs}, got {test!r}"
        )
    return cast("Mapping[str, Any]", test)


def _check_labels(name: str, values: Sequence[int] | Tensor, count: int, classes: int) -> list[int]:
    indices = [int(value) for value in values]
    _check_count(name, indices, count)
    bad = [index for index in indices if not 0 <= index < classes]
    if bad:
        raise ConfigError(
            f"{name} holds class indices {bad[:5]} outside [0, {classes}) for {classes} class "
            "names; pass the class_names of the dataset the model was trained on"
        )
    return indices


def displayable(
    images: Tensor, mean: Sequence[float] | None, std: Sequence[float] | None
) -> Tensor:
    """Return the images as float (B, C, H, W) in [0, 1], un-normalised as documented."""
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ConfigError(
            f"images must be a tensor (B, C, H, W) with C = 1 or 3, got {shape}; "
            "pass a batch as the model receives it"
        )
    check_batch_not_empty(images)
    pixels = images.detach().cpu().float()
    if (mean is None) != (std is None):
        raise ConfigError("give mean and std together (the normalisation to undo), or neither")
    if mean is not None and std is not None:
        channels = pixels.shape[1]
        if len(mean) != channels or len(std) != channels:
            raise ConfigError(
                f"mean and std need {channels} values (one per channel), got {len(mean)} and "
                f"{len(std)}"
            )
        shape = (1, channels, 1, 1)
        pixels = pixels * torch.tensor(std).view(shape) + torch.tensor(mean).view(shape)
        return pixels.clamp(0.0, 1.0)
    if pixels.min() >= 0.0 and pixels.max() <= 1.0:
        return pixels
    low = pixels.amin(dim=(1, 2, 3), keepdim=True)
    high = pixels.amax(dim=(1, 2, 3), keepdim=True)
    return (pixels - low) / (high - low).clamp_min(1e-12)
