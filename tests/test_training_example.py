"""examples/train_from_scratch.py: trains, saves the run and its plots, protects an existing run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

from tests.helpers import ROOT, load_module
from tests.image_helpers import write_image_folder
from tests.training_helpers import FINISHED_COMMAND_RUN, digits_vit
from vitlib.cli import main as cli_main
from vitlib.errors import ConfigError
from vitlib.training import recipe

QUICK = ["--layers", "1", "--epochs", "2", "--max-steps", "4", "--no-progress"]


def load_example() -> ModuleType:
    return load_module(ROOT / "examples" / "train_from_scratch.py")


def test_a_quick_digits_run_saves_the_run_and_the_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load_example()
    run = tmp_path / "run"
    assert example.main([*QUICK, "--output-dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert "final test accuracy:" in out
    assert sorted(p.name for p in run.iterdir()) == FINISHED_COMMAND_RUN
    saved = json.loads((run / "best" / "config.json").read_text())
    assert saved["labels"] == [str(digit) for digit in range(10)]
    assert saved["preprocessing"]["channels"] == 1
    # 4 of the first epoch's 46 steps (2,884 images in batches of 64), then the run stops
    assert len(json.loads((run / "history.json").read_text())["val_acc"]) == 1
    state = torch.load(run / "last" / "training_state.pt", weights_only=True)
    assert (state["epoch"], state["global_step"]) == (1, 4)


def test_an_existing_run_is_kept_unless_resumed_or_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load_example()
    run = ["--output-dir", str(tmp_path)]
    assert example.main([*QUICK, "--max-steps", "2", *run]) == 0
    capsys.readouterr()
    assert example.main([*QUICK, *run]) == 2
    error = capsys.readouterr().err
    assert "Pass --resume to continue" in error
    assert "--overwrite to replace it" in error
    assert "resume=True" not in error, "the command names its flags, not fit's keywords"
    assert example.main([*QUICK, *run, "--resume", "--batch-size", "32"]) == 2
    error = capsys.readouterr().err
    assert "--batch-size: saved 64, given 32" in error
    assert example.main([*QUICK, *run, "--resume"]) == 0  # 2 more steps, in the next epoch
    assert len(json.loads((tmp_path / "history.json").read_text())["val_acc"]) == 2
    assert example.main([*QUICK, *run, "--overwrite"]) == 0


def test_without_matplotlib_the_run_is_saved_and_the_plots_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    example = load_example()
    assert example.main([*QUICK, "--output-dir", str(tmp_path)]) == 0
    assert 'matplotlib is not installed; no plots (pip install "vitlib[plots]")' in (
        capsys.readouterr().out
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "best",
        "history.json",
        "last",
        "settings.json",
    ]


def test_the_predictions_grid_samples_every_class() -> None:
    from vitlib.data import DigitsDataset

    images, labels = recipe.sample_every_class(DigitsDataset("test", image_size=8), count=16)
    assert labels.tolist() == [*range(10), *range(6)]
    assert images.shape == (16, 1, 8, 8)


def test_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in (
        "(default: 15 for the digits; about 1000 steps for a --data folder)",
        "(default: 64 for the digits; 8-64 for a --data folder)",
        "(default: 0.002 for the digits; 0.001 for a --data folder)",
        "(default: 50 for the digits; a tenth of the steps for a --data folder)",
        "--weight-decay WEIGHT_DECAY decoupled weight decay on weight matrices (default: 0.05)",
    ):
        assert shown in text


def test_the_defaults_follow_the_data(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", per_class=4)
    write_image_folder(tmp_path / "test", per_class=1)
    example = load_example()
    digits = example.parse_args([])
    folder = example.parse_args(["--data", str(tmp_path)])
    assert (digits.preset, digits.image_size, digits.layers) == ("ViT-Ti/4", 16, 4)
    assert (digits.epochs, digits.batch_size, digits.lr, digits.warmup_steps) == (15, 64, 2e-3, 50)
    assert (folder.preset, folder.image_size, folder.layers) == ("ViT-Ti/4", 32, 6)
    assert folder.recipe_note.startswith("recipe: chose ViT-Ti/4 with 6 layers at 32 px")
    assert digits.recipe_note is None
    assert (folder.resize, folder.crop_ratio) == ("squash", 1.0), "objects near edges stay in"
    assert (digits.resize, digits.crop_ratio) == (None, None), "the digits' own rule"
    assert digits.output_dir is None, "named after the data once its folder is locked"
    assert folder.val_split == digits.val_split == 0.1


@pytest.mark.parametrize("std", [-1.0, 0.0, float("nan"), float("inf"), True, "1"])
def test_a_position_std_that_is_not_a_positive_finite_number_is_refused(std: Any) -> None:
    model = digits_vit()
    before = model.position_embedding.detach().clone()
    with pytest.raises((ConfigError, TypeError), match="position_std must be a finite number > 0"):
        model.reset_parameters(position_std=std)
    assert torch.equal(model.position_embedding, before)


@pytest.mark.parametrize(
    ("option", "text"),
    [
        (["--position-std", "-1"], "argument --position-std: must be a finite number > 0, got -1"),
        (["--num-workers", "100000"], "argument --num-workers: must be an int >= 0 and <= "),
        (["--lr", "nan"], "argument --lr: must be a finite number > 0, got nan"),
        (["--epochs", "0"], "argument --epochs: must be an int >= 1, got 0"),
    ],
)
def test_bad_options_are_refused_in_one_line_before_the_data_is_loaded(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    option: list[str],
    text: str,
) -> None:
    def no_data(args: object) -> None:
        raise AssertionError("the data was loaded before the options were checked")

    monkeypatch.setattr(recipe, "load_data", no_data)
    assert cli_main(["train", *QUICK, *option, "--output-dir", str(tmp_path / "run")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert text in error
    assert not (tmp_path / "run").exists()
