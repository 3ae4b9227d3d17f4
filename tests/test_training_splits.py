"""vitlib train's honest split: best/ is chosen on a validation split (valid/, or images held out
of train/), the test split is evaluated once at the end; which data chose the model is recorded,
a resume keeps it, and vitlib evaluate says when it is given that data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import vitlib
from vitlib.cli import main
from vitlib.data.image_folder import load_image_splits
from vitlib.data.loaders import stratified_split

from .image_helpers import COLOURS, write_image, write_image_folder
from .training_helpers import as_earlier_vitlib_history

TINY = [
    "--preset", "ViT-Ti/4", "--image-size", "8", "--layers", "1", "--batch-size", "4",
    "--epochs", "1", "--no-progress",
]  # fmt: skip


def _data(root: Path, *, train: int = 5, valid: int = 0, test: int = 2) -> Path:
    write_image_folder(root / "train", per_class=train)
    write_image_folder(root / "test", per_class=test, seed=50)
    if valid:
        write_image_folder(root / "valid", per_class=valid, seed=90)
    return root


def _train(data: Path, run: Path, *flags: str) -> int:
    return main(["train", "--data", str(data), *TINY, "--output-dir", str(run), *flags])


def _json(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def test_a_valid_folder_chooses_best_and_the_test_split_is_tested_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _data(tmp_path / "data", valid=2)
    run = tmp_path / "run"
    assert _train(data, run) == 0
    out = capsys.readouterr().out
    assert "15 train / 6 validation / 6 test images" in out, "all of train/ trains"
    assert "best/ is chosen on 6 validation images (valid/); the 6 test images are" in out
    history = _json(run / "history.json")
    assert history["val_name"] == "validation"
    assert (history["test"]["epoch"], history["test"]["samples"]) == (1, 6)
    assert f"final test accuracy: {history['test']['acc']:.4f} (best epoch 1 of 1, chosen" in out
    selection = _json(run / "settings.json")["model_selection"]
    assert selection == {
        "split": "validation",
        "source": "valid/",
        "data": str(data.resolve()),
        "folder": str((data / "valid").resolve()),
        "held_out": [],
    }


def test_a_val_folder_is_a_validation_folder_too_but_not_beside_a_valid_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _data(tmp_path / "data")
    write_image_folder(data / "val", per_class=1, seed=90)
    assert _train(data, tmp_path / "run") == 0
    assert "best/ is chosen on 3 validation images (val/)" in capsys.readouterr().out
    write_image_folder(data / "valid", per_class=1, seed=90)
    assert _train(data, tmp_path / "again") == 2
    assert "holds both valid/ and val/; expected at most one" in capsys.readouterr().err


def test_without_a_valid_folder_a_stratified_share_of_train_is_held_out_and_kept_on_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _data(tmp_path / "data", train=12)
    run = tmp_path / "run"
    assert _train(data, run, "--val-split", "0.25") == 0
    out = capsys.readouterr().out
    assert "27 train / 9 validation / 6 test images" in out, "3 of each class of 12 held out"
    assert "held out of train/: 25% of each class, seed 0" in out
    selection = _json(run / "settings.json")["model_selection"]
    held_out = selection["held_out"]
    assert sorted({name.split("/")[0] for name in held_out}) == sorted(COLOURS)
    assert [name.split("/")[0] for name in held_out].count("red") == 3
    assert selection["folder"] == str((data / "train").resolve())
    # New images in train/ would move a fresh split; the resumed run holds out the same ones.
    for index in range(3):
        write_image(data / "train" / "red" / f"a{index}.png", COLOURS["red"], (20, 20), index)
    fresh = load_image_splits(data, val_split=0.25, seed=0).held_out
    assert list(fresh) != held_out, "the test needs a split that moved"
    assert _train(data, run, "--val-split", "0.25", "--resume", "--epochs", "2") == 0
    assert "30 train / 9 validation / 6 test images" in capsys.readouterr().out
    assert _json(run / "settings.json")["model_selection"]["held_out"] == held_out


def test_with_val_split_0_best_is_chosen_on_test_and_everything_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _data(tmp_path / "data")
    run = tmp_path / "run"
    assert _train(data, run, "--val-split", "0") == 0
    out = capsys.readouterr().out
    assert "15 train / 6 test images" in out
    assert "best/ is chosen on the test split itself (6 images; --val-split 0" in out
    assert "chosen on the test split itself, so optimistic: --val-split 0" in out
    history = _json(run / "history.json")
    assert (history["val_name"], history["test"]) == ("test", None)
    assert _json(run / "settings.json")["model_selection"]["split"] == "test"


def test_a_resume_refuses_data_that_would_choose_differently(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _data(tmp_path / "data", valid=1)
    run = tmp_path / "run"
    assert _train(data, run) == 0
    (data / "valid").rename(tmp_path / "elsewhere")
    capsys.readouterr()
    assert _train(data, run, "--resume", "--epochs", "2") == 2
    error = capsys.readouterr().err
    assert "--resume: the run chose its best epochs on valid/" in error
    assert "but the data now gives test/, itself" in error


def _as_made_by_an_earlier_vitlib(run: Path) -> None:
    """What an earlier vitlib left: settings without the selection and the new flags, a history
    of test_loss and test_acc."""
    settings = _json(run / "settings.json")
    for key in ("model_selection", "--val-split", "--resize", "--crop-ratio"):
        del settings[key]
    (run / "settings.json").write_text(json.dumps(settings))
    as_earlier_vitlib_history(run)


def test_a_run_of_an_earlier_vitlib_resumes_only_as_it_was_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _data(tmp_path / "data")
    run = tmp_path / "run"
    assert _train(data, run, "--val-split", "0") == 0
    _as_made_by_an_earlier_vitlib(run)
    capsys.readouterr()
    assert _train(data, run, "--resume", "--epochs", "2") == 2
    error = capsys.readouterr().err
    assert "made by an earlier vitlib, which chose best/ on the test split" in error
    assert "Resume it as it was made with --val-split 0" in error
    assert _train(data, run, "--resume", "--epochs", "2", "--val-split", "0") == 0
    assert _json(run / "history.json")["val_name"] == "test"


def test_the_digits_hold_out_a_stratified_tenth_of_their_train_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = ["train", "--layers", "1", "--epochs", "1", "--max-steps", "1", "--no-progress"]
    assert main([*argv, "--output-dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert "2598 train / 143 validation / 355 test images" in out
    selection = _json(run / "settings.json")["model_selection"]
    assert selection["source"] == "held out of the digits train split: 10% of each digit, seed 0"
    targets = vitlib.data.DigitsDataset("train").targets
    assert selection["held_out"] == stratified_split(targets, 0.1, seed=0)[1]
    resume = ["--resume", "--epochs", "2", "--max-steps", "2"]
    assert main([*argv, "--output-dir", str(run), *resume]) == 0
    assert len(_json(run / "history.json")["val_acc"]) == 2, "the resume trained an epoch"
    assert _json(run / "settings.json")["model_selection"] == selection
