"""The class-token shortcut of ``optimize_for_inference``: the copy's ``forward`` runs only the
class token through the last block, and its logits must be the plain model's for every
configuration; the plain model computes every token (its hooks see them all)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn

from vitlib import TransformerEncoderBlock, ViT, ViTConfig, optimize_for_inference
from vitlib.inference.optimize import InferenceViT, class_token_output

from .helpers import tiny_vit
from .strategies import small_configs


def _images(model: ViT, batch: int = 3, seed: int = 1) -> Tensor:
    cfg = model.config
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, cfg.in_channels, *cfg.image_hw, generator=generator)
    return images.to(next(model.parameters()).dtype)


def _assert_same(got: Tensor, want: Tensor) -> None:
    """Equal up to float64 rounding, relative to the tensor's scale (some drawn configurations,
    width 3 with layer-norm eps 1e-12, are too ill-conditioned to compare in float32)."""
    scale = float(want.abs().max()) if want.numel() else 0.0
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6 * scale + 1e-30)


@given(small_configs())
def test_logits_equal_the_plain_models(cfg: ViTConfig) -> None:
    model = ViT.from_config(cfg).eval()
    fast = optimize_for_inference(model, "fp32").double()
    images = _images(model).double()
    with torch.no_grad():
        _assert_same(fast(images), model.double()(images))


@given(
    tokens=st.integers(1, 9),
    heads=st.integers(1, 3),
    head_dim=st.integers(1, 4),
    layer_scale=st.sampled_from([None, 0.5]),
)
def test_the_class_token_output_is_the_first_row_of_the_block_output(
    tokens: int, heads: int, head_dim: int, layer_scale: float | None
) -> None:
    torch.manual_seed(0)
    dim = heads * head_dim
    block = TransformerEncoderBlock(dim, heads, 2 * dim, 0.0, layer_scale_init=layer_scale)
    block = block.double().eval()
    x = torch.randn(2, tokens, dim, dtype=torch.float64)
    with torch.no_grad():
        _assert_same(class_token_output(block, x), block(x)[:, :1])


def test_float32_logits_equal_the_plain_models_at_vit_b_width() -> None:
    """The float32 figure the benchmarks rely on: a ViT-B/16-wide model, two blocks."""
    torch.manual_seed(0)
    model = ViT(img_size=64, num_transformer_layers=2, num_classes=10).eval()
    images = _images(model, batch=2)
    with torch.no_grad():
        fast = optimize_for_inference(model, "fp32")
        torch.testing.assert_close(fast(images), model(images), rtol=1e-5, atol=1e-5)


def _shapes_seen(model: ViT, images: Tensor) -> dict[str, tuple[int, ...]]:
    """The output shapes a forward hook sees on the last block and on its MLP."""
    shapes: dict[str, tuple[int, ...]] = {}
    last = model.transformer_encoder[-1]
    assert isinstance(last, TransformerEncoderBlock)
    handles = [
        module.register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape))
        )
        for name, module in (("block", last), ("mlp", last.mlp_block))
    ]
    with torch.no_grad():
        model(images)
    for handle in handles:
        handle.remove()
    return shapes


def test_hooks_on_the_plain_models_last_block_see_every_token() -> None:
    model = tiny_vit(num_register_tokens=2).eval()
    images = _images(model, batch=2)
    tokens = 1 + 2 + 16
    assert _shapes_seen(model, images) == {"block": (2, tokens, 12), "mlp": (2, tokens, 12)}
    fast = optimize_for_inference(model, "fp32")
    assert isinstance(fast, InferenceViT)
    assert _shapes_seen(fast, images) == {"mlp": (2, 1, 12)}  # the block itself is not called


def test_mean_pooling_and_a_last_block_of_another_kind_run_every_token() -> None:
    class Doubling(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return 2 * x

    doubling = tiny_vit().eval()
    doubling.transformer_encoder.append(Doubling())
    mean = tiny_vit(pool="mean").eval()
    for model in (doubling, mean):
        images = _images(model)
        with torch.no_grad():
            torch.testing.assert_close(optimize_for_inference(model, "fp32")(images), model(images))
    assert _shapes_seen(optimize_for_inference(mean, "fp32"), _images(mean))["mlp"][1] == 17


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_every_copy_keeps_the_plain_features(precision: str) -> None:
    """Only ``forward`` takes the shortcut: ``forward_features`` still returns every token, from
    float32 images, in every precision."""
    model = tiny_vit().eval()
    images = _images(model)
    fast = optimize_for_inference(model, precision)  # type: ignore[arg-type]
    with torch.no_grad():
        features = fast.forward_features(images)
        expected = model.forward_features(images)
    assert features.shape == expected.shape
    torch.testing.assert_close(features.float(), expected, rtol=0.1, atol=0.1)
