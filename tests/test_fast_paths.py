"""The paths to speed and memory: gradient checkpointing, torch.compile and torch.export give
the same numbers as the plain eager model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from vitlib import ViT
from vitlib.cli import main
from vitlib.training import TrainingConfigError, fit

# Registers, mean pooling, LayerScale, stochastic depth and dynamic image sizes: every branch.
VARIANT: dict[str, Any] = {
    "img_size": 16,
    "patch_size": 4,
    "num_transformer_layers": 2,
    "embedding_dim": 16,
    "mlp_size": 32,
    "num_heads": 2,
    "num_classes": 3,
    "mlp_dropout": 0.0,
    "embedding_dropout": 0.0,
    "num_register_tokens": 2,
    "pool": "mean",
    "layer_scale_init": 0.1,
    "dynamic_img_size": True,
}


def _variant(**changes: Any) -> ViT:
    torch.manual_seed(0)
    return ViT(**{**VARIANT, **changes})


def _gradients(model: ViT, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad()
    torch.manual_seed(1)  # the same dropout and drop-path draws
    loss = nn.functional.cross_entropy(model(images), labels)
    torch.autograd.backward(loss)
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_grad_checkpointing_gives_the_same_gradients_with_dropout() -> None:
    model = _variant(mlp_dropout=0.3, attn_dropout=0.2, drop_path_rate=0.3).train()
    images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    plain = _gradients(model, images, labels)
    model.set_grad_checkpointing(True)
    checkpointed = _gradients(model, images, labels)
    assert plain.keys() == checkpointed.keys()
    for name, gradient in plain.items():
        torch.testing.assert_close(checkpointed[name], gradient, atol=1e-6, rtol=0, msg=name)


def test_grad_checkpointing_stores_only_the_block_inputs() -> None:
    """Fewer tensors are saved for the backward pass: the switch really changes the graph."""
    model = _variant().train()
    images = torch.randn(2, 3, 16, 16)

    def saved_tensors() -> int:
        count = 0

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            nonlocal count
            count += 1
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            model(images).sum()
        return count

    plain = saved_tensors()
    model.set_grad_checkpointing(True)
    assert saved_tensors() < plain / 2


def test_fit_with_grad_checkpointing_trains_identically() -> None:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(16, 3, 16, 16), torch.randint(0, 3, (16,)))
    loader = DataLoader(data, batch_size=8)
    histories = []
    for checkpointing in (False, True):
        model = _variant(mlp_dropout=0.1)
        history = fit(
            model, loader, loader, epochs=2, progress=False, grad_checkpointing=checkpointing
        )
        histories.append(history.as_dict())
        assert model.grad_checkpointing is checkpointing
    assert histories[0] == histories[1]


def test_fit_refuses_grad_checkpointing_for_a_model_without_the_switch() -> None:
    loader = DataLoader(TensorDataset(torch.randn(4, 4), torch.tensor([0, 1, 2, 0])), batch_size=2)
    with pytest.raises(TrainingConfigError, match="needs a model with set_grad_checkpointing"):
        fit(nn.Linear(4, 3), loader, loader, epochs=1, progress=False, grad_checkpointing=True)


def test_grad_checkpointing_switch_is_a_bool() -> None:
    not_a_bool: Any = "yes"
    with pytest.raises(TypeError, match="enable must be a bool"):
        _variant().set_grad_checkpointing(not_a_bool)


def test_vitlib_train_takes_grad_checkpointing(tmp_path: Path) -> None:
    quick = ["--epochs", "1", "--max-steps", "1", "--layers", "1", "--no-progress"]
    run = ["train", *quick, "--grad-checkpointing", "--output-dir", str(tmp_path / "run")]
    assert main(run) == 0
    assert (tmp_path / "run" / "last" / "model.safetensors").is_file()


@pytest.mark.slow
def test_compiled_inference_and_training_equal_eager_without_graph_breaks() -> None:
    """fullgraph=True fails on any graph break; two input sizes exercise dynamic_img_size.

    Graph capture is the same for every backend; aot_eager traces forward and backward without
    inductor's C++ compilation, which takes minutes on 2 cores (benchmarks/ time inductor).
    """
    model = _variant().eval()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        for size in (16, 24):
            images = torch.randn(2, 3, size, size)
            torch.testing.assert_close(compiled(images), model(images), atol=1e-5, rtol=1e-5)

    model.train()
    images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    eager = _gradients(model, images, labels)
    train_step = torch.compile(model, fullgraph=True, backend="aot_eager")
    model.zero_grad()
    loss = nn.functional.cross_entropy(train_step(images), labels)
    torch.autograd.backward(loss)
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None
        torch.testing.assert_close(parameter.grad, eager[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.slow
def test_torch_export_equals_eager_with_a_dynamic_batch() -> None:
    model = _variant(dynamic_img_size=False).eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    exported = torch.export.export(
        model, (torch.randn(2, 3, 16, 16),), dynamic_shapes={"images": {0: batch}}
    )
    for size in (1, 5):
        images = torch.randn(size, 3, 16, 16)
        torch.testing.assert_close(exported.module()(images), model(images), atol=1e-6, rtol=1e-6)
