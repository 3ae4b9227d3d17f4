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
    assert len(json.loads((run / "history.json").read_text())["test_acc"]) == 1
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
    assert len(json.loads((tmp_path / "history.json").read_text())["test_acc"]) == 2
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
    for shown in ("(default: 15)", "(default: 64)", "(default: 0.002)", "(default: 50)"):
        assert shown in text


def test_the_defaults_follow_the_data() -> None:
    example = load_example()
    digits = example.parse_args([])
    folder = example.parse_args(["--data", "somewhere"])
    assert (digits.preset, digits.image_size, digits.layers) == ("ViT-Ti/4", 16, 4)
    assert (folder.preset, folder.image_size, folder.layers) == ("ViT-Ti/16", 224, None)
    assert digits.output_dir == Path("runs/from_scratch")


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
