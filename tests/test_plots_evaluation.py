"""The pictures of predict and evaluate: predicted images, a confusion matrix, the mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from vitlib.analysis.plots import plot_confusion_matrix, plot_image_predictions, plot_mistakes

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
    with pytest.raises(ValueError, match="must be 2 x 2 non-negative counts"):
        plot_confusion_matrix(matrix, ["a", "b"], tmp_path / "bad.png")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        plot_confusion_matrix(matrix, ["a", "b", "c"], out)


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
