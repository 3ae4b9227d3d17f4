"""The class-token shortcut: ``ViT.forward`` runs only the class token through the last block.

Its logits and gradients must be those of the whole network (``forward_head(forward_features)``),
for every configuration; the blocks' ``num_queries`` must give the first rows of the full output.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given
from torch import Tensor, nn

from vitlib import MultiheadSelfAttentionBlock, TransformerEncoderBlock, ViT, ViTConfig
from vitlib.errors import InputShapeError

from .helpers import tiny_vit
from .strategies import small_configs


def _images(model: ViT, batch: int = 3, seed: int = 1) -> Tensor:
    cfg = model.config
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, cfg.in_channels, *cfg.image_hw, generator=generator)
    return images.to(next(model.parameters()).dtype)


def _full(model: ViT, images: Tensor) -> Tensor:
    return model.forward_head(model.forward_features(images))


def _assert_same(got: Tensor, want: Tensor) -> None:
    """Equal up to float64 rounding, relative to the tensor's scale.

    The comparison runs in float64: some drawn configurations (width 3, layer-norm eps 1e-12)
    are so ill-conditioned that float32 gradients are rounding noise in either path (checked
    against float64: the two float32 results then differ from the truth, and from each other,
    by more than the truth itself).
    """
    scale = float(want.abs().max()) if want.numel() else 0.0
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6 * scale + 1e-30)


@given(small_configs())
def test_logits_equal_the_whole_network(cfg: ViTConfig) -> None:
    model = ViT.from_config(cfg).double().eval()
    images = _images(model)
    with torch.no_grad():
        _assert_same(model(images), _full(model, images))


@given(small_configs())
def test_gradients_equal_the_whole_network(cfg: ViTConfig) -> None:
    no_dropout = dataclasses.replace(
        cfg, attn_dropout=0.0, mlp_dropout=0.0, embedding_dropout=0.0, drop_path_rate=0.0
    )
    model = ViT.from_config(no_dropout).double().train()
    images = _images(model)

    def gradients(logits: Tensor) -> list[Tensor]:
        model.zero_grad(set_to_none=True)
        torch.autograd.backward(logits.square().sum())
        return [
            torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()
        ]

    for got, want in zip(gradients(model(images)), gradients(_full(model, images)), strict=True):
        _assert_same(got, want)


def test_float32_logits_equal_the_whole_network_at_vit_b_shape() -> None:
    """The float32 figure the benchmarks rely on: a ViT-B/16-wide model, two blocks."""
    torch.manual_seed(0)
    model = ViT(img_size=64, num_transformer_layers=2, num_classes=10).eval()
    images = _images(model, batch=2)
    with torch.no_grad():
        torch.testing.assert_close(model(images), _full(model, images), rtol=1e-5, atol=1e-5)


def test_gradient_checkpointing_takes_the_shortcut_too() -> None:
    model = tiny_vit(mlp_dropout=0.0, embedding_dropout=0.0).train()
    images = _images(model)
    model(images).sum().backward()
    plain = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    model.set_grad_checkpointing(True)
    model(images).sum().backward()
    checkpointed = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(checkpointed) == len(plain) == len(list(model.parameters()))
    for got, want in zip(checkpointed, plain, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def _last_block_outputs(model: ViT, images: Tensor) -> dict[str, tuple[int, ...]]:
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


def test_last_block_computes_only_the_class_token_unless_switched_off() -> None:
    model = tiny_vit(num_register_tokens=2)
    images = _images(model, batch=2)
    tokens = 1 + 2 + 16
    assert _last_block_outputs(model, images) == {"block": (2, 1, 12), "mlp": (2, 1, 12)}
    model.class_token_shortcut = False
    assert _last_block_outputs(model, images) == {"block": (2, tokens, 12), "mlp": (2, tokens, 12)}
    # The earlier blocks never change; mean pooling reads every token, so it never shortcuts.
    mean = tiny_vit(pool="mean")
    assert _last_block_outputs(mean, images)["block"] == (2, 16 + 1, 12)


def test_a_last_block_of_another_kind_runs_as_written() -> None:
    """A user's own last block (no ``num_queries``) is called as it always was."""

    class Doubling(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return 2 * x

    model = tiny_vit()
    model.transformer_encoder.append(Doubling())
    images = _images(model)
    with torch.no_grad():
        torch.testing.assert_close(model(images), _full(model, images))


@pytest.mark.parametrize("num_queries", [1, 3, 17])
def test_blocks_num_queries_are_the_first_rows(num_queries: int) -> None:
    torch.manual_seed(0)
    block = TransformerEncoderBlock(12, 3, 24, 0.0, layer_scale_init=0.5).eval()
    tokens = torch.randn(2, 17, 12)
    with torch.no_grad():
        full = block(tokens)
        torch.testing.assert_close(block(tokens, num_queries=num_queries), full[:, :num_queries])
        attention = block.msa_block
        out, weights = attention(tokens, need_weights=True)
        few_out, few_weights = attention(tokens, need_weights=True, num_queries=num_queries)
    assert few_weights.shape == (2, 3, num_queries, 17)
    torch.testing.assert_close(few_weights, weights[:, :, :num_queries])
    torch.testing.assert_close(few_out, out[:, :num_queries])


@pytest.mark.parametrize(
    ("num_queries", "error", "message"),
    [
        (0, ValueError, r"num_queries must be >= 1, got 0"),
        (18, InputShapeError, r"num_queries=18 .* 17 tokens given; pass at most 17"),
        (True, TypeError, r"num_queries must be an int >= 1, got True"),
        ("1", TypeError, r"num_queries must be an int >= 1, got '1'"),
    ],
)
def test_bad_num_queries_is_named(num_queries: object, error: type, message: str) -> None:
    attention = MultiheadSelfAttentionBlock(12, 3)
    with pytest.raises(error, match=message):
        attention(torch.randn(2, 17, 12), num_queries=num_queries)
