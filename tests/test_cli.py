"""The ``vitlib`` command and the per-layer summary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vitlib import ViT, count_parameters, load_pretrained
from vitlib.analysis.reports import presets_markdown
from vitlib.analysis.summary import summary
from vitlib.cli import main

from .helpers import FIXTURES, ROOT, TINY
from .image_helpers import write_image_folder

#: Rows written out by hand: Table 1's sizes (DeiT's for Ti and S), torchvision's published
#: parameter counts (B, L, H) and twice its published GFLOPS (multiply-adds), rounded.
PUBLISHED_ROWS = [
    "| ViT-Ti/16 | 12 | 192 | 768 | 3 | 5,717,416 | 5.7M (DeiT) | 2.51 |",
    "| ViT-S/16 | 12 | 384 | 1536 | 6 | 22,050,664 | 22M (DeiT) | 9.20 |",
    "| ViT-B/16 | 12 | 768 | 3072 | 12 | 86,567,656 | 86M | 35.13 |",
    "| ViT-B/32 | 12 | 768 | 3072 | 12 | 88,224,232 | 86M | 8.82 |",
    "| ViT-L/16 | 24 | 1024 | 4096 | 16 | 304,326,632 | 307M | 123.11 |",
    "| ViT-L/32 | 24 | 1024 | 4096 | 16 | 306,535,400 | 307M | 30.76 |",
    "| ViT-H/14 | 32 | 1280 | 5120 | 16 | 632,045,800 | 632M | 334.59 |",
]


def test_presets_command_prints_the_generated_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == presets_markdown()
    rows = out.strip().splitlines()
    for row in PUBLISHED_ROWS:
        assert row in rows


def test_summary_command_for_a_huge_preset_is_exact_without_allocating_it() -> None:
    """ViT-H/14's 632M float32 weights would take 2.5 GB; the summary runs on the meta device."""
    script = (
        "import resource, sys; from vitlib.cli import main; "
        "status = main(['summary', 'ViT-H/14', '--num-classes', '3', '--depth', '1']); "
        "print('peak MB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024); "
        "sys.exit(status)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"Total params: {count_parameters('ViT-H/14') - 1280 * 997 - 997:,}" in out
    assert "transformer_encoder (Sequential)   [1, 257, 1280]" in out
    peak = int(out.rsplit("peak MB ", 1)[1])
    assert peak < 1500, f"the summary process peaked at {peak} MB: were the weights allocated?"


def test_summary_rows_report_shapes_parameters_and_trainable() -> None:
    model = ViT(**TINY)
    for parameter in model.transformer_encoder.parameters():
        parameter.requires_grad = False
    table = summary(model, depth=2)
    rows = {row.name: row for row in table.rows}
    assert rows["patch_embedding"].output_shape == (1, 16, 12)
    assert rows["transformer_encoder.0"].output_shape == (1, 17, 12)
    assert rows["head"].output_shape == (1, 5)
    assert rows["transformer_encoder"].trainable == 0
    assert rows[""].trainable == rows[""].parameters - rows["transformer_encoder"].parameters
    assert table.total_parameters == count_parameters(model.config)
    assert "Partial" in str(table)
    assert model.training, "the model's mode is restored"
    assert next(model.parameters()).device.type == "cpu", "the model is left where it was"


def test_summary_of_a_plain_module_needs_an_input_shape() -> None:
    with pytest.raises(ValueError, match="input_shape is required for a Linear"):
        summary(torch.nn.Linear(3, 4))
    assert summary(torch.nn.Linear(3, 4), (2, 3)).rows[0].output_shape == (2, 4)


def test_convert_command_writes_a_vitlib_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = FIXTURES / "timm_token" / "state_dict.safetensors"
    assert main(["convert", str(source), str(tmp_path / "out"), "--num-heads", "3"]) == 0
    assert "wrote" in capsys.readouterr().out
    converted = load_pretrained(tmp_path / "out")
    original = load_pretrained(source, num_heads=3)
    for key, tensor in original.state_dict().items():
        assert torch.equal(converted.state_dict()[key], tensor), key


def test_errors_print_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["summary", "ViT-Q/16"]) == 2
    assert "vitlib summary: error: unknown ViT preset 'ViT-Q/16'" in capsys.readouterr().err
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    source = FIXTURES / "timm_token" / "state_dict.safetensors"
    assert main(["convert", str(source), str(tmp_path / "out"), "--num-heads", "3"]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_a_batch_larger_than_the_training_set_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["train", "--batch-size", "5000", "--output-dir", str(out), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    # 2884 augmented and clean training images, less a clean and an augmented copy of the 143
    # held out for validation
    assert (
        "error: --batch-size must be between 1 and the 2598 samples of the training set, got 5000"
        in err
    )
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["script", "module"])
def test_console_entry_points_run(command: str) -> None:
    """The installed ``vitlib`` script (pyproject's [project.scripts]) and ``python -m vitlib``."""
    if command == "script":
        script = Path(sys.executable).parent / "vitlib"
        assert script.is_file(), f"no vitlib script beside {sys.executable}: pip install -e ."
        argv = [str(script), "presets"]
    else:
        argv = [sys.executable, "-m", "vitlib", "presets"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == presets_markdown()


def test_the_summary_shown_in_the_docs_is_what_the_command_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    page = (ROOT / "docs" / "cli.md").read_text()
    shown = page.split("$ vitlib summary ViT-B/16 --num-classes 3 --depth 1\n", 1)[1].split(
        "```", 1
    )[0]
    assert main(["summary", "ViT-B/16", "--num-classes", "3", "--depth", "1"]) == 0
    assert capsys.readouterr().out == shown


def test_train_resume_with_fewer_or_the_same_epochs_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """``--resume --epochs 1`` on a 2-epoch run is refused in one line; ``--epochs 2`` says the
    run is complete and trains nothing (the API and the command share the rule)."""
    write_image_folder(tmp_path / "data" / "train", per_class=3)  # 2 of each class trains
    write_image_folder(tmp_path / "data" / "test", per_class=2)
    run = tmp_path / "run"
    argv = [
        "train", "--data", str(tmp_path / "data"), "--preset", "ViT-Ti/4", "--image-size", "8",
        "--layers", "1", "--batch-size", "4", "--no-progress", "--output-dir", str(run),
    ]  # fmt: skip
    assert main([*argv, "--epochs", "2"]) == 0
    capsys.readouterr()
    state = (run / "last" / "training_state.pt").read_bytes()
    assert main([*argv, "--epochs", "1", "--resume"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"with epochs=1 (--epochs 1), but the run in {run} already has 2 epochs" in line
    caplog.clear()
    assert main([*argv, "--epochs", "2", "--resume"]) == 0  # the lines go to the log (pytest's)
    assert f"the run in {run} is already complete: it has its 2 epochs" in caplog.text
    assert "vitlib train --resume --epochs 3" in caplog.text
    assert "epoch 1/2" not in caplog.text
    assert "epoch 2/2" not in caplog.text
    assert "final test accuracy" in capsys.readouterr().out, "the complete run is tested"
    assert (run / "last" / "training_state.pt").read_bytes() == state
