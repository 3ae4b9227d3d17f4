"""The pictures of predict and evaluate: predicted images, a confusion matrix, the mistakes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from vitlib.analysis.plots import (
    MAX_CONFUSION_CLASSES,
    plot_confusion_matrix,
    plot_image_predictions,
    plot_mistakes,
)
from vitlib.errors import ConfigError

pytest.importorskip("matplotlib")


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        return int(width), int(height)


def test_confusion_matrix_is_a_png_and_refuses_a_matrix_that_is_not_square(
    tmp_path: Path,
) -> None:
    matrix = [[5, 1, 0], [0, 3, 2], [1, 0, 4]]
    out = plot_confusion_matrix(matrix, ["a", "b", "c"], tmp_path / "cm.png")
    assert _png_size(out)[0] > 100
    with pytest.raises(ValueError, match="must be 2 x 2 non-negative whole counts"):
        plot_confusion_matrix(matrix, ["a", "b"], tmp_path / "bad.png")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        plot_confusion_matrix(matrix, ["a", "b", "c"], out)


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        ([[1, -1], [0, 1]], "non-negative whole counts"),
        ([[1, 0.5], [0, 1]], "non-negative whole counts"),
        ([[1, float("nan")], [0, 1]], "non-negative whole counts"),
        ([[1, float("inf")], [0, 1]], "non-negative whole counts"),
        ([[1, 0], [0]], "rows of ints of one length"),
        ([[0, 0], [0, 0]], "holds no counts"),
    ],
)
def test_confusion_matrix_refuses_what_is_not_counts(
    tmp_path: Path, matrix: Any, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        plot_confusion_matrix(matrix, ["a", "b"], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_only_the_classes_present_are_drawn(tmp_path: Path) -> None:
    """A 1000-class matrix of 3 classes present is drawn as the 3-class one: same size."""
    small = torch.tensor([[2, 1, 0], [0, 0, 0], [0, 0, 3]])
    big = torch.zeros(1000, 1000, dtype=torch.int64)
    big[[[10], [500], [999]], [10, 500, 999]] = small
    names = [f"class {index}" for index in range(1000)]
    drawn = plot_confusion_matrix(big, names, tmp_path / "big.png")
    reference = plot_confusion_matrix(
        small, ["class 10", "class 500", "class 999"], tmp_path / "s.png"
    )
    assert _png_size(drawn) == _png_size(reference)
    assert drawn.read_bytes() == reference.read_bytes()


def test_more_than_the_limit_of_classes_present_is_refused_with_the_fix(tmp_path: Path) -> None:
    classes = MAX_CONFUSION_CLASSES + 1
    with pytest.raises(ConfigError, match=rf"{classes} classes present .* more than the 100 "):
        plot_confusion_matrix(
            torch.eye(classes), [str(i) for i in range(classes)], tmp_path / "x.png"
        )
    assert not (tmp_path / "x.png").exists()
    limit = torch.zeros(classes + 50, classes + 50)
    limit[:MAX_CONFUSION_CLASSES, :MAX_CONFUSION_CLASSES] = torch.eye(MAX_CONFUSION_CLASSES)
    names = [str(i) for i in range(classes + 50)]
    assert plot_confusion_matrix(limit, names, tmp_path / "limit.png").is_file()


def test_mistakes_grid_checks_its_lengths(tmp_path: Path) -> None:
    images = torch.rand(3, 3, 8, 8)
    out = plot_mistakes(
        images, [0, 1, 2], [1, 2, 0], [0.9, 0.8, 0.7], ["a", "b", "c"], tmp_path / "m.png"
    )
    assert out.is_file()
    with pytest.raises(ValueError, match="confidences has 2 entries for 3 images"):
        plot_mistakes(images, [0, 1, 2], [1, 2, 0], [0.9, 0.8], ["a", "b", "c"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="outside"):
        plot_mistakes(images, [0, 1, 5], [1, 2, 0], [0.9] * 3, ["a", "b", "c"], tmp_path / "y.png")


def test_image_predictions_are_drawn_with_their_probability(tmp_path: Path) -> None:
    out = plot_image_predictions(
        torch.zeros(2, 1, 8, 8), ["cat", "dog"], [0.93, 0.5], tmp_path / "p.png",
        mean=(0.5,), std=(0.25,),
    )  # fmt: skip
    assert out.is_file()
    with pytest.raises(ValueError, match="labels has 1 entries for 2 images"):
        plot_image_predictions(torch.zeros(2, 1, 8, 8), ["cat"], [0.9, 0.1], tmp_path / "q.png")
