"""vitlib finetune (and examples/finetune.py): the chapter's recipe (frozen backbone, new head)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

import vitlib
from vitlib import training
from vitlib.cli import main
from vitlib.data import Preprocessing

from .helpers import ROOT, load_module
from .image_helpers import write_image_folder


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
    real_fit = training.fit

    def fit(model: vitlib.ViT, *args: Any, **kwargs: Any) -> Any:
        heads_before_training.append({k: v.clone() for k, v in model.head.state_dict().items()})
        return real_fit(model, *args, **kwargs)

    monkeypatch.setattr("vitlib.training.recipe.fit", fit)
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
    assert len(json.loads((output / "history.json").read_text())["val_acc"]) == 1
    assert _example().main(argv) == 2, "an existing run is never overwritten silently"
    assert vitlib.checkpoints.model_metadata(vitlib.load_pretrained(output)).labels == tuple(
        "0123456789"
    )


def _write_rgb_checkpoint(folder: Path, mean: list[float] | None) -> Path:
    torch.manual_seed(0)
    model = vitlib.ViT(
        img_size=16, patch_size=4, num_transformer_layers=1, embedding_dim=12, mlp_size=24,
        num_heads=3, num_classes=4,
    )  # fmt: skip
    if mean is not None:
        spec = Preprocessing((16, 16), mean=tuple(mean), std=(0.2, 0.2, 0.2))
        vitlib.checkpoints.attach_metadata(model, preprocessing=spec)
    return vitlib.save_pretrained(model, folder)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::vitlib.AdaptedCheckpointWarning")
def test_finetune_command_normalises_with_the_checkpoints_mean_and_std(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "data" / "train", per_class=3)  # 1 of each held out
    write_image_folder(tmp_path / "data" / "test", per_class=2)
    checkpoint = _write_rgb_checkpoint(tmp_path / "pretrained", mean=[0.1, 0.2, 0.3])
    out = tmp_path / "run"
    argv = ["finetune", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "data")]
    assert main([*argv, "--epochs", "1", "--batch-size", "4", "--output-dir", str(out)]) == 0
    spec = vitlib.checkpoints.model_metadata(vitlib.load_pretrained(out)).preprocessing
    assert spec is not None
    assert (spec.mean, spec.std) == ((0.1, 0.2, 0.3), (0.2, 0.2, 0.2))
    assert vitlib.checkpoints.model_metadata(vitlib.load_pretrained(out)).labels == (
        "blue",
        "green",
        "red",
    )
    assert vitlib.predict(out, sorted((tmp_path / "data" / "test").rglob("*.png")))


def test_a_checkpoint_that_does_not_tell_num_heads_is_one_line_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    odd = vitlib.ViT(
        img_size=16, patch_size=4, num_transformer_layers=1, embedding_dim=20, mlp_size=24,
        num_heads=5, num_classes=3,
    )  # fmt: skip
    weights = tmp_path / "timm_style.pth"
    torch.save(vitlib.checkpoints.export_state_dict(odd, "timm"), weights)
    assert (
        main(["finetune", "--checkpoint", str(weights), "--output-dir", str(tmp_path / "r")]) == 2
    )
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "--num-heads" in error


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::vitlib.AdaptedCheckpointWarning")
def test_finetune_saves_into_runs_named_after_the_data_and_keeps_objects_near_edges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_image_folder(tmp_path / "photos" / "train", per_class=3)
    write_image_folder(tmp_path / "photos" / "test", per_class=1)
    checkpoint = _write_rgb_checkpoint(tmp_path / "pretrained", mean=None)
    monkeypatch.chdir(tmp_path)
    argv = ["finetune", "--checkpoint", str(checkpoint), "--data", "photos", "--epochs", "1"]
    assert main([*argv, "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "run folder: runs/photos-finetune; --output-dir chooses another" in out
    assert "best/ is chosen on 3 validation images (held out of train/" in out
    assert "final test accuracy: " in out
    spec = vitlib.checkpoints.model_metadata(vitlib.load_pretrained("runs/photos-finetune"))
    assert spec.preprocessing is not None
    assert (spec.preprocessing.resize, spec.preprocessing.crop_ratio) == ("squash", 1.0)
    assert main([*argv, "--batch-size", "4"]) == 0
    assert "run folder: runs/photos-finetune-2 (runs/photos-finetune is taken)" in (
        capsys.readouterr().out
    )
