"""plot_history and plot_predictions: PNG files, no display needed, never a silent overwrite."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from vitlib.analysis import plots
from vitlib.analysis.plots import plot_history, plot_predictions
from vitlib.errors import InputShapeError, InputTypeError

pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HISTORY: dict[str, Sequence[float]] = {
    "train_loss": [2.3, 1.1, 0.7],
    "train_acc": [0.2, 0.6, 0.8],
    "val_loss": [2.2, 1.3, 0.9],
    "val_acc": [0.25, 0.55, 0.7],
}
CLASSES = ["cat", "dog", "owl"]


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 1024


def test_history_is_saved_as_png(tmp_path: Path) -> None:
    out = plot_history(HISTORY, tmp_path / "curves.png")
    assert out == tmp_path / "curves.png"
    assert_png(out)


def test_history_accepts_tuples_and_creates_folders(tmp_path: Path) -> None:
    history = {key: tuple(values) for key, values in HISTORY.items()} | {"lr": (0.1, 0.1, 0.1)}
    assert_png(plot_history(history, str(tmp_path / "run" / "a" / "curves.png")))


def test_a_single_epoch_is_plotted(tmp_path: Path) -> None:
    assert_png(
        plot_history({key: values[:1] for key, values in HISTORY.items()}, tmp_path / "h.png")
    )


def test_an_existing_file_is_kept_unless_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "curves.png"
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match=rf"{re.escape(str(path))} .*overwrite=True"):
        plot_history(HISTORY, path)
    assert path.read_bytes() == b"keep me"
    assert_png(plot_history(HISTORY, path, overwrite=True))


def test_missing_history_keys_are_named(tmp_path: Path) -> None:
    history = {key: values for key, values in HISTORY.items() if key != "val_acc"}
    with pytest.raises(ValueError, match=r"history lacks \['val_acc'\]"):
        plot_history(history, tmp_path / "h.png")


def test_ragged_history_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"one length .*'val_acc': 2"):
        plot_history(HISTORY | {"val_acc": [0.1, 0.2]}, tmp_path / "h.png")


def test_empty_history_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"history is empty \(0 epochs\)"):
        plot_history({key: [] for key in HISTORY}, tmp_path / "h.png")


def test_non_numeric_history_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"history\['train_loss'\] must be a sequence of floats"):
        plot_history(HISTORY | {"train_loss": ["a", "b", "c"]}, tmp_path / "h.png")


def _legends(
    history: Mapping[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[list[str]]:
    """The legend texts of each panel plot_history draws for ``history``."""
    drawn: list[Any] = []

    def keep(figure: Any, path: Path, **options: Any) -> Path:
        drawn.append(figure)
        return path

    monkeypatch.setattr(plots, "save_figure", keep)
    plot_history(history, tmp_path / "h.png")
    (figure,) = drawn
    return [[text.get_text() for text in axes.get_legend().get_texts()] for axes in figure.axes]


def test_the_selection_curves_are_labelled_validation_and_the_test_is_one_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    test = {"loss": 0.95, "acc": 0.6, "epoch": 3, "samples": 10}
    legends = _legends(HISTORY | {"val_name": "validation", "test": test}, tmp_path, monkeypatch)
    assert legends == [["train", "validation", "test, once (epoch 3's weights)"]] * 2
    assert _legends(HISTORY, tmp_path, monkeypatch) == [["train", "validation"]] * 2


def test_a_run_that_chose_on_its_test_split_says_so_as_do_earlier_histories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chose_on_test = HISTORY | {"val_name": "test"}
    assert _legends(chose_on_test, tmp_path, monkeypatch) == [["train", "test (chose best/)"]] * 2
    earlier = {key.replace("val_", "test_"): values for key, values in HISTORY.items()}
    assert _legends(earlier, tmp_path, monkeypatch) == [["train", "test (chose best/)"]] * 2


@pytest.mark.parametrize(
    "test",
    [
        {"loss": 0.9, "acc": 0.6, "epoch": 4, "samples": 3},
        {"loss": float("nan"), "acc": 0.6, "epoch": 1},
        {"acc": 0.6, "epoch": 1},
        [0.9, 0.6, 1],
    ],
)
def test_a_malformed_final_test_is_refused(tmp_path: Path, test: Any) -> None:
    with pytest.raises(ValueError, match=r"history\['test'\] must be the final test"):
        plot_history(HISTORY | {"test": test}, tmp_path / "h.png")
    assert not (tmp_path / "h.png").exists()


def test_overwrite_must_be_a_bool(tmp_path: Path) -> None:
    """A string such as "no" would count as true and replace the file."""
    path = plot_history(HISTORY, tmp_path / "history.png")
    before = path.read_bytes()
    with pytest.raises(InputTypeError, match=r"overwrite must be a bool .* got 'no'"):
        plot_history(HISTORY, path, overwrite="no")  # type: ignore[arg-type]
    assert path.read_bytes() == before


def test_a_non_png_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"curves\.pdf; give a path ending in \.png"):
        plot_history(HISTORY, tmp_path / "curves.pdf")


@pytest.mark.parametrize("channels", [1, 3])
def test_predictions_grid_is_saved_as_png(tmp_path: Path, channels: int) -> None:
    images = torch.rand(5, channels, 12, 12)
    out = plot_predictions(images, [0, 1, 2, 0, 1], [0, 2, 2, 1, 1], CLASSES, tmp_path / "p.png")
    assert out == tmp_path / "p.png"
    assert_png(out)


def test_predictions_accept_tensors_and_undo_normalisation(tmp_path: Path) -> None:
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.2, 0.2)
    normalised = (torch.rand(4, 3, 8, 8) - torch.tensor(mean).view(1, 3, 1, 1)) / 0.2
    labels, predictions = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 1, 0])
    path = tmp_path / "p.png"
    assert_png(plot_predictions(normalised, labels, predictions, CLASSES, path, mean=mean, std=std))


def test_predictions_scale_unnormalised_images_without_mean_std(tmp_path: Path) -> None:
    assert_png(
        plot_predictions(torch.randn(2, 1, 8, 8) * 5, [0, 1], [1, 1], CLASSES, tmp_path / "p.png")
    )


def test_predictions_draw_at_most_max_images(tmp_path: Path) -> None:
    few = plot_predictions(torch.rand(2, 3, 8, 8), [0] * 2, [0] * 2, CLASSES, tmp_path / "2.png")
    capped = plot_predictions(
        torch.rand(50, 3, 8, 8), [0] * 50, [0] * 50, CLASSES, tmp_path / "50.png", max_images=2
    )
    assert_png(capped)
    assert abs(capped.stat().st_size - few.stat().st_size) < 0.5 * few.stat().st_size


def test_predictions_refuse_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "p.png"
    path.touch()
    with pytest.raises(FileExistsError, match=r"already exists; pass overwrite=True"):
        plot_predictions(torch.rand(1, 3, 8, 8), [0], [0], CLASSES, path)
    assert_png(plot_predictions(torch.rand(1, 3, 8, 8), [0], [0], CLASSES, path, overwrite=True))


@pytest.mark.parametrize("shape", [(3, 8, 8), (2, 2, 8, 8), (2, 4, 8, 8), (0, 3, 8, 8)])
def test_bad_image_batches_are_refused(tmp_path: Path, shape: tuple[int, ...]) -> None:
    labels = [0] * (shape[0] if len(shape) == 4 else 1)
    with pytest.raises(ValueError, match=r"images|empty batch"):
        plot_predictions(torch.rand(shape), labels, labels, CLASSES, tmp_path / "p.png")


def test_an_empty_batch_is_refused_as_the_analyses_refuse_it(tmp_path: Path) -> None:
    with pytest.raises(InputShapeError, match=r"images is an empty batch \(shape \(0, 3, 8, 8\)\)"):
        plot_predictions(torch.rand(0, 3, 8, 8), [], [], CLASSES, tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


def test_label_count_must_match_the_images(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"labels has 2 entries for 3 images"):
        plot_predictions(torch.rand(3, 3, 8, 8), [0, 1], [0, 1, 2], CLASSES, tmp_path / "p.png")


def test_class_indices_must_name_a_class(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"predictions holds class indices \[3\] outside \[0, 3\)"):
        plot_predictions(torch.rand(2, 3, 8, 8), [0, 1], [0, 3], CLASSES, tmp_path / "p.png")


def test_mean_without_std_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mean and std together"):
        plot_predictions(
            torch.rand(1, 3, 8, 8), [0], [0], CLASSES, tmp_path / "p.png", mean=[0.5] * 3
        )


def test_mean_and_std_need_one_value_per_channel(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"need 1 values \(one per channel\), got 3 and 3"):
        plot_predictions(
            torch.rand(1, 1, 8, 8),
            [0],
            [0],
            CLASSES,
            tmp_path / "p.png",
            mean=[0.5] * 3,
            std=[0.2] * 3,
        )


def test_max_images_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"max_images must be an int >= 1, got 0"):
        plot_predictions(
            torch.rand(1, 3, 8, 8), [0], [0], CLASSES, tmp_path / "p.png", max_images=0
        )


def test_missing_matplotlib_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r'pip install "vitlib\[plots\]"'):
        plot_history(HISTORY, tmp_path / "h.png")
