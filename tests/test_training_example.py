"""examples/train_from_scratch.py: trains, saves the run and its plots, protects an existing run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--layers", "1", "--epochs", "2", "--max-steps", "4", "--no-progress"]


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "train_from_scratch", ROOT / "examples" / "train_from_scratch.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_quick_digits_run_saves_the_run_and_the_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load_example()
    run = tmp_path / "run"
    assert example.main([*QUICK, "--output-dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert "final test accuracy:" in out
    assert sorted(p.name for p in run.iterdir()) == [
        "best",
        "history.json",
        "history.png",
        "last",
        "predictions.png",
    ]
    assert len(json.loads((run / "history.json").read_text())["test_acc"]) == 1  # 4 of 23 steps


def test_an_existing_run_is_kept_unless_resumed_or_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = load_example()
    run = ["--output-dir", str(tmp_path)]
    assert example.main([*QUICK, "--max-steps", "2", *run]) == 0
    capsys.readouterr()
    assert example.main([*QUICK, *run]) == 2
    error = capsys.readouterr().err
    assert "resume=True" in error
    assert "overwrite=True" in error
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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "history.json", "last"]


def test_the_defaults_follow_the_data() -> None:
    example = load_example()
    digits = example.parse_args([])
    folder = example.parse_args(["--data", "somewhere"])
    assert (digits.preset, digits.image_size, digits.layers) == ("ViT-Ti/4", 16, 4)
    assert (folder.preset, folder.image_size, folder.layers) == ("ViT-Ti/16", 224, None)
    assert digits.output_dir == Path("runs/from_scratch")
