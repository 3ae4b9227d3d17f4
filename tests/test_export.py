"""ONNX export: a dynamic batch, outputs equal to eager under onnxruntime, nothing overwritten."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import vitlib
from vitlib import ViT
from vitlib.cli import main
from vitlib.inference.export import export_onnx

onnxruntime = pytest.importorskip("onnxruntime", reason="in the dev requirements (vitlib[onnx])")

# Mean pooling, registers and a pre-logits layer: the branches a plain B/16 does not take.
VARIANT: dict[str, Any] = {
    "img_size": (16, 24),
    "patch_size": 8,
    "num_transformer_layers": 2,
    "embedding_dim": 16,
    "mlp_size": 32,
    "num_heads": 2,
    "num_classes": 3,
    "num_register_tokens": 1,
    "pool": "mean",
    "representation_size": 8,
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[ViT, Path]:
    torch.manual_seed(0)
    model = ViT(**VARIANT).train()  # exported in eval mode, and left in train mode
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx")
    assert model.training
    return model.eval(), path


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_equals_eager_for_any_batch(exported: tuple[ViT, Path], batch: int) -> None:
    model, path = exported
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    images = torch.randn(batch, 3, 16, 24)
    (logits,) = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        expected = model(images).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_an_existing_file_is_never_replaced_silently(exported: tuple[ViT, Path]) -> None:
    model, path = exported
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="already exists; nothing was written"):
        export_onnx(model, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx"], "no staging left"


def test_only_vits_and_onnx_paths_are_exported(tmp_path: Path) -> None:
    not_a_vit: Any = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"model must be a vitlib\.ViT .*, got Linear"):
        export_onnx(not_a_vit, tmp_path / "x.onnx")
    with pytest.raises(ValueError, match=r"writes a \.onnx file"):
        export_onnx(ViT(**VARIANT), tmp_path / "model.bin")


@pytest.mark.slow
def test_vitlib_convert_to_onnx(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ViT(**VARIANT).eval()
    vitlib.save_pretrained(model, tmp_path / "ck")
    assert main(["convert", str(tmp_path / "ck"), str(tmp_path / "m.onnx"), "--to", "onnx"]) == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    images = torch.randn(2, 3, 16, 24)
    (logits,) = session.run(None, {"images": images.numpy()})
    np.testing.assert_allclose(logits, model(images).detach().numpy(), atol=1e-4, rtol=1e-4)
