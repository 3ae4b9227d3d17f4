"""optimize_for_inference: a copy that is still a ViT, takes and returns float32, agrees with the
float32 model on a trained model's predictions, and leaves the original alone."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import vitlib
from vitlib import ViT
from vitlib.data import DigitsDataset, make_dataloaders
from vitlib.inference import PrecisionWarning, optimize_for_inference
from vitlib.inference.optimize import is_quantized
from vitlib.training import fit

from .helpers import TINY

pytest.importorskip("sklearn", reason="the digits come with scikit-learn (vitlib[data])")


@pytest.fixture(scope="module")
def trained() -> tuple[ViT, torch.Tensor]:
    """A small ViT trained on the digits (over 80% test accuracy), and the test images."""
    train, test = DigitsDataset("train", image_size=16), DigitsDataset("test", image_size=16)
    train_loader, test_loader = make_dataloaders(train, test, 64)
    torch.manual_seed(0)
    model = vitlib.create_model(
        "ViT-Ti/4", img_size=16, in_channels=1, num_classes=10, num_transformer_layers=1,
        embedding_dim=48, mlp_size=96, mlp_dropout=0.0, embedding_dropout=0.0,
    )  # fmt: skip
    model.reset_parameters(position_std=1.0)
    history = fit(model, train_loader, test_loader, epochs=6, progress=False, lr=3e-3)
    assert history.val_acc[-1] > 0.8, history.val_acc
    images = torch.stack([test[index][0] for index in range(len(test))])
    return model.eval(), images


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_predictions_agree_with_float32(trained: tuple[ViT, torch.Tensor], precision: Any) -> None:
    model, images = trained
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    fast = optimize_for_inference(model, precision)
    assert isinstance(fast, ViT)
    assert not fast.training
    assert fast.config == model.config
    with torch.inference_mode():
        expected, logits = model(images), fast(images)
    assert logits.dtype == torch.float32
    agreement = (logits.argmax(dim=1) == expected.argmax(dim=1)).float().mean().item()
    assert agreement >= (1.0 if precision == "fp32" else 0.98), agreement
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), f"the original model changed: {name}"


@pytest.mark.slow
def test_int8_replaces_every_linear_layer(trained: tuple[ViT, torch.Tensor]) -> None:
    fast = optimize_for_inference(trained[0], "int8")
    assert not any(type(module) is torch.nn.Linear for module in fast.modules())


@pytest.mark.parametrize(
    ("flags", "engine"), [({"amx_int8", "avx512_vnni"}, "onednn"), (set(), None)]
)
def test_int8_packs_for_onednn_where_the_cpu_has_amx(
    monkeypatch: pytest.MonkeyPatch, flags: set[str], engine: str | None
) -> None:
    monkeypatch.setattr("vitlib.inference.optimize._cpu_flags", lambda: flags)
    default = torch.backends.quantized.engine
    used: list[str] = []
    original: Callable[..., Any] = torch.ao.quantization.quantize_dynamic  # untyped in torch

    def spy(*args: Any, **kwargs: Any) -> Any:
        used.append(torch.backends.quantized.engine)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.ao.quantization, "quantize_dynamic", spy)
    optimize_for_inference(ViT(**TINY), "int8")
    assert used == [engine or default]
    assert torch.backends.quantized.engine == default  # restored


def test_bf16_warns_where_the_cpu_emulates_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("vitlib.inference.optimize.cpu_has_bf16_units", lambda: False)
    model = vitlib.create_model("ViT-Ti/16", img_size=32, num_classes=3)
    with pytest.warns(PrecisionWarning, match="no bfloat16 units .* slower than float32"):
        optimize_for_inference(model, "bf16")


def test_bad_arguments_are_refused() -> None:
    model = vitlib.create_model("ViT-Ti/16", img_size=32, num_classes=3)
    not_a_vit: Any = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"model must be a vitlib\.ViT, got Linear\(.*\(Linear\)"):
        optimize_for_inference(not_a_vit)
    with pytest.raises(TypeError, match=r"compile must be a bool \(True or False\), got 'yes'"):
        optimize_for_inference(model, "int8", compile="yes")  # type: ignore[arg-type]
    not_a_precision: Any = "int4"
    with pytest.raises(ValueError, match="precision must be one of 'fp32', 'bf16', 'int8'"):
        optimize_for_inference(model, not_a_precision)
    with pytest.raises(ValueError, match=r"starts from a float32 model.*model\.float\(\)"):
        optimize_for_inference(model.bfloat16())


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_is_quantized_tells_the_int8_copy_apart(precision: Any) -> None:
    model = ViT(**TINY)
    with warnings.catch_warnings():  # bf16 may be emulated here
        warnings.simplefilter("ignore", PrecisionWarning)
        fast = optimize_for_inference(model, precision)
    assert is_quantized(fast) == (precision == "int8")
    assert not is_quantized(model)


@given(widths=st.lists(st.integers(1, 8), min_size=2, max_size=4))
def test_any_dynamically_quantised_module_is_quantized(widths: list[int]) -> None:
    """Whatever the layers, torch.ao's dynamic quantisation is recognised, and float is not."""
    layers = torch.nn.Sequential(*(torch.nn.Linear(a, b) for a, b in itertools.pairwise(widths)))
    assert not is_quantized(layers)
    quantize: Callable[..., Any] = torch.ao.quantization.quantize_dynamic  # untyped in torch
    with warnings.catch_warnings():  # torch.ao's eager quantisation is deprecated
        warnings.simplefilter("ignore")
        assert is_quantized(quantize(layers, {torch.nn.Linear}, dtype=torch.qint8))


def test_quantised_tensors_count_and_quantizable_float_modules_do_not() -> None:
    holder = torch.nn.Module()
    holder.register_buffer("codes", torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint8))
    assert is_quantized(holder)
    # "quantizable" modules are float modules prepared for quantisation, not quantised ones
    assert not is_quantized(torch.ao.nn.quantizable.MultiheadAttention(4, 2))


def test_torchao_quantisation_is_quantized() -> None:
    pytest.importorskip("torchao", reason="in vitlib[fast]")
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    model = ViT(**TINY)
    quantize_(model, Int8DynamicActivationInt8WeightConfig())
    assert is_quantized(model)


def test_is_quantized_takes_modules_only() -> None:
    not_a_module: Any = {"weight": torch.ones(1)}
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module, got \{'weight'"):
        is_quantized(not_a_module)


def test_an_int8_copy_is_not_optimised_again() -> None:
    int8 = optimize_for_inference(ViT(**TINY), "int8")
    with pytest.raises(ValueError, match="already int8-quantised; pass the float32 model"):
        optimize_for_inference(int8, "fp32")


def test_the_bf16_copy_takes_float32_images_in_every_method() -> None:
    """O34/O35: the cast to bfloat16 is where images enter, not a hook on ``forward``."""
    model = ViT(**TINY).eval()
    with warnings.catch_warnings():  # bf16 may be emulated here
        warnings.simplefilter("ignore", PrecisionWarning)
        fast = optimize_for_inference(model, "bf16")
    images = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        expected = model.forward_intermediates(images, indices=1)
        got = fast.forward_intermediates(images, indices=1)
    assert got.indices == expected.indices
    torch.testing.assert_close(
        got.intermediates[0].float(), expected.intermediates[0], atol=0.1, rtol=0.1
    )
    assert fast(images).dtype == torch.float32
