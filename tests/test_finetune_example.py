"""examples/finetune.py: the chapter's recipe (frozen backbone, new head) on any checkpoint."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

import vitlib

ROOT = Path(__file__).resolve().parents[1]


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("finetune", ROOT / "examples" / "finetune.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::vitlib.AdaptedCheckpointWarning")
def test_finetune_trains_only_a_new_head_on_an_adapted_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    rgb = vitlib.ViT(
        img_size=32,
        patch_size=4,
        num_transformer_layers=2,
        embedding_dim=24,
        mlp_size=48,
        num_heads=3,
        num_classes=7,
    )
    vitlib.save_pretrained(rgb, tmp_path / "pretrained")
    output = tmp_path / "run"
    argv = [
        "--checkpoint",
        str(tmp_path / "pretrained"),
        "--image-size",
        "16",
        "--epochs",
        "1",
        "--output-dir",
        str(output),
        "--batch-size",
        "128",
    ]
    assert _example().main(argv) == 0
    out = capsys.readouterr().out
    assert "10 classes, 16px" in out
    assert "final test accuracy" in out
    tuned = vitlib.load_pretrained(output / "last")
    assert tuned.config.in_channels == 1
    assert tuned.config.num_classes == 10
    frozen = "transformer_encoder.0.mlp_block.fc1.weight"
    assert torch.equal(tuned.state_dict()[frozen], rgb.state_dict()[frozen])
    assert len(json.loads((output / "history.json").read_text())["test_acc"]) == 1
    assert _example().main(argv) == 2, "an existing run is never overwritten silently"
