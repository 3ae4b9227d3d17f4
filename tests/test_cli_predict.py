"""``vitlib predict``: a table or JSON per image, a plot, unreadable images named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import vitlib
from vitlib.checkpoints import attach_metadata
from vitlib.cli import main
from vitlib.data import Preprocessing

from .helpers import tiny_vit
from .image_helpers import write_image, write_image_folder

LABELS = ["zebra", "apple", "mango", "kiwi", "fig"]


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    model = tiny_vit()
    attach_metadata(model, labels=LABELS, preprocessing=Preprocessing.imagenet(16))
    return vitlib.save_pretrained(model, tmp_path / "checkpoint")


def test_predict_prints_one_line_per_image_and_names_the_unreadable(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_image_folder(tmp_path / "images", per_class=1)
    (folder / "broken.png").write_bytes(b"no image")
    assert main(["predict", str(checkpoint), str(folder), "--top-k", "2"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 3
    assert all(line.split(": ")[1].split(" (")[0] in LABELS for line in lines)
    assert "skipped" in captured.err
    assert "broken.png" in captured.err
    assert main(["predict", str(checkpoint), str(folder), "--strict"]) == 2
    assert "broken.png" in capsys.readouterr().err


def test_predict_json_matches_the_function(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = sorted(write_image_folder(tmp_path / "images", per_class=1).rglob("*.png"))
    assert main(["predict", str(checkpoint), *map(str, paths), "--json", "--top-k", "3"]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = vitlib.predict(checkpoint, paths, top_k=3)
    assert report["predictions"] == [prediction.to_dict() for prediction in expected]
    assert report["skipped"] == []


def test_predict_plot_is_written_and_never_replaced_silently(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_image_folder(tmp_path / "images", per_class=1)
    plot = tmp_path / "predictions.png"
    assert main(["predict", str(checkpoint), str(folder), "--plot", str(plot)]) == 0
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert main(["predict", str(checkpoint), str(folder), "--plot", str(plot)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["predict", str(checkpoint), str(folder), "--plot", str(plot), "--overwrite"]) == 0


def test_predict_without_a_readable_image_fails_in_one_line(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(checkpoint), str(tmp_path / "missing.jpg")]) == 2
    err = capsys.readouterr().err
    assert "missing.jpg: no such file" in err
    assert "no readable image" in err


def test_predict_plot_titles_carry_the_file_names(
    tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vitlib.analysis.plots as plots

    folder = tmp_path / "images"
    long_name = "a_photo_with_a_very_long_name_taken_on_holiday_0042.png"
    write_image(folder / "holiday" / long_name, (200, 40, 40), (20, 16), seed=1)
    write_image(folder / "red" / "same.png", (200, 40, 40), (20, 16), seed=2)
    write_image(folder / "blue" / "same.png", (40, 40, 200), (20, 16), seed=3)
    drawn: dict[str, list[str]] = {}
    draw = plots.plot_image_predictions

    def spy(images: Any, labels: list[str], *args: Any, **kwargs: Any) -> Path:
        drawn["labels"] = list(labels)
        return draw(images, labels, *args, **kwargs)

    monkeypatch.setattr(plots, "plot_image_predictions", spy)
    plot = tmp_path / "predictions.png"
    assert main(["predict", str(checkpoint), str(folder), "--plot", str(plot)]) == 0
    assert plot.read_bytes().startswith(b"\x89PNG")
    names = [label.split("\n")[0] for label in drawn["labels"]]
    classes = [label.split("\n")[1] for label in drawn["labels"]]
    assert all(label in LABELS for label in classes)
    assert "blue/same.png" in names  # two files of one name: their folders tell them apart
    assert "red/same.png" in names
    (shortened,) = (name for name in names if "\u2026" in name)  # the long one, cut in the middle
    assert len(shortened) <= 28
    assert shortened.startswith("a_photo_with")
    assert shortened.endswith("_0042.png")


def test_num_workers_is_passed_on_and_checked(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_image_folder(tmp_path / "images", per_class=2)
    outputs = []
    for workers in ("0", "2"):
        args = ["predict", str(checkpoint), str(folder), "--json", "--batch-size", "2"]
        assert main([*args, "--num-workers", workers]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert outputs[0] == outputs[1]
    assert main(["predict", str(checkpoint), str(folder), "--num-workers", "-1"]) == 2
    assert "--num-workers: must be an int >= 0" in capsys.readouterr().err
