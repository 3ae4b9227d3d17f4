"""examples/finetune.py: the chapter's recipe (frozen backbone, new head) on any checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import vitlib

from .helpers import ROOT, load_module


def _example() -> ModuleType:
    return load_module(ROOT / "examples" / "finetune.py")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::vitlib.AdaptedCheckpointWarning")
def test_finetune_trains_only_a_new_head_on_an_adapted_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
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
    example = _example()
    heads_before_training: list[dict[str, torch.Tensor]] = []
    real_fit = example.fit

    def fit(model: vitlib.ViT, *args: Any, **kwargs: Any) -> Any:
        heads_before_training.append({k: v.clone() for k, v in model.head.state_dict().items()})
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr(example, "fit", fit)
    assert example.main(argv) == 0
    out = capsys.readouterr().out
    assert "10 classes, 16px" in out
    assert "final test accuracy" in out
    tuned = vitlib.load_pretrained(output / "last")
    assert tuned.config.in_channels == 1
    assert tuned.config.num_classes == 10
    frozen = "transformer_encoder.0.mlp_block.fc1.weight"
    assert torch.equal(tuned.state_dict()[frozen], rgb.state_dict()[frozen])
    (initial_head,) = heads_before_training
    for name, value in tuned.head.state_dict().items():  # the new head was trained
        assert not torch.equal(value, initial_head[name]), name
    assert len(json.loads((output / "history.json").read_text())["test_acc"]) == 1
    assert _example().main(argv) == 2, "an existing run is never overwritten silently"
