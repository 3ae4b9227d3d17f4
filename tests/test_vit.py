"""The ViT model: eq. 1-4, shapes, options, equivalences, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given
from hypothesis import strategies as st

import vitlib
from vitlib import ConfigError, InputShapeError, TransformerEncoderBlock, ViT, ViTConfig

from .helpers import TINY, tiny_vit
from .strategies import small_configs


@given(cfg=small_configs(), batch=st.integers(1, 3))
def test_output_shapes(cfg: ViTConfig, batch: int) -> None:
    """logits (B, K), tokens (B, prefix + N, D), pre-logits (B, num_features)."""
    model = ViT.from_config(cfg).eval()
    images = torch.randn(batch, cfg.in_channels, *cfg.image_hw)
    tokens = model.forward_features(images)
    assert tokens.shape == (batch, cfg.num_prefix_tokens + cfg.num_patches, cfg.embedding_dim)
    features = model.forward_head(tokens, pre_logits=True)
    assert features.shape == (batch, cfg.num_features)
    expected = (batch, cfg.num_classes) if cfg.num_classes else (batch, cfg.num_features)
    assert model(images).shape == expected


@given(cfg=small_configs())
def test_gradients_reach_every_parameter(cfg: ViTConfig) -> None:
    # A layer norm of two features maps every vector to about +-(1, -1): what flows back through
    # the final norm is eps-sized (~eps / |a - b|^3) and can round to exactly 0. Not a model bug.
    assume(cfg.embedding_dim > 2)
    torch.manual_seed(0)
    model = ViT.from_config(cfg).eval()  # no dropout or dropped path may zero a gradient
    with torch.no_grad():
        for parameter in model.parameters():  # random, non-saturating (tanh) values everywhere
            parameter.normal_(std=0.3)
    images = torch.randn(2, cfg.in_channels, *cfg.image_hw)
    model(images).square().sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


@given(cfg=small_configs())
def test_eval_mode_is_deterministic_even_with_dropout(cfg: ViTConfig) -> None:
    model = ViT.from_config(
        cfg.replace(attn_dropout=0.5, mlp_dropout=0.5, embedding_dropout=0.5, drop_path_rate=0.5)
    )
    images = torch.randn(2, cfg.in_channels, *cfg.image_hw)
    model.eval()
    assert torch.equal(model(images), model(images))


def test_dropout_is_active_in_training() -> None:
    model = ViT(**TINY, mlp_dropout=0.5, embedding_dropout=0.5).train()
    images = torch.randn(2, 3, 16, 16)
    assert not torch.equal(model(images), model(images))


def test_kwargs_and_config_build_the_same_model() -> None:
    cfg = ViTConfig(**TINY)
    torch.manual_seed(0)
    from_kwargs = ViT(**TINY)
    torch.manual_seed(0)
    from_config = ViT.from_config(cfg)
    assert from_kwargs.config == from_config.config == cfg
    for (name, a), (_, b) in zip(
        from_kwargs.state_dict().items(), from_config.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_initialisation_is_reproducible_and_follows_the_documented_scheme() -> None:
    torch.manual_seed(3)
    first = ViT(**TINY)
    torch.manual_seed(3)
    second = ViT(**TINY)
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    big = ViT.from_preset("ViT-S/16", num_classes=10)
    assert isinstance(big.head, torch.nn.Linear)
    assert big.head.weight.std().item() == pytest.approx(0.02, rel=0.15)
    assert big.head.bias.abs().max() == 0
    assert big.position_embedding.std().item() == pytest.approx(0.02, rel=0.1)
    assert big.class_embedding is not None
    assert big.class_embedding.abs().max() < 1e-4


def test_class_token_pooling_reads_token_zero_and_mean_pooling_skips_prefix_tokens() -> None:
    model = ViT(**TINY, num_register_tokens=2, pool="mean")
    tokens = torch.randn(2, 3 + 16, 12)
    torch.testing.assert_close(model.forward_head(tokens, pre_logits=True), tokens[:, 3:].mean(1))
    token_model = ViT(**TINY)
    torch.testing.assert_close(
        token_model.forward_head(tokens[:, 2:], pre_logits=True), tokens[:, 2]
    )


def test_forward_is_forward_head_of_forward_features() -> None:
    model = ViT(**TINY, representation_size=7).eval()
    images = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(model(images), model.forward_head(model.forward_features(images)))
    features = model.forward_head(model.forward_features(images), pre_logits=True)
    assert features.shape == (2, 7)
    assert features.abs().max() <= 1  # tanh pre-logits


def test_num_classes_zero_returns_pooled_features() -> None:
    model = ViT(**{**TINY, "num_classes": 0})
    assert isinstance(model.head, torch.nn.Identity)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 12)


def test_register_tokens_sit_after_the_class_token_without_position_embedding() -> None:
    model = ViT(**TINY, num_register_tokens=2, embedding_dropout=0.0).eval()
    assert model.register_tokens is not None
    with torch.no_grad():
        model.register_tokens.normal_()
    embedded = model.embed(torch.randn(1, 3, 16, 16))
    torch.testing.assert_close(embedded[0, 1:3], model.register_tokens[0])
    assert model.position_embedding.shape == (1, 1 + 16, 12)


def test_no_class_token_model() -> None:
    model = ViT(**TINY, class_token=False, pool="mean")
    assert model.class_embedding is None
    assert model.forward_features(torch.randn(1, 3, 16, 16)).shape == (1, 16, 12)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((2, 3, 32, 32), r"expected images of size 16x16, got 32x32"),
        ((2, 1, 16, 16), "expected 3 input channels, got 1"),
        ((3, 16, 16), "got a 3-d tensor"),
        ((2, 3, 18, 16), "image size 18x16 is not divisible by patch size 4x4"),
    ],
)
def test_wrong_inputs_raise_with_given_and_expected(shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(InputShapeError, match=message):
        ViT(**TINY)(torch.randn(*shape))


@pytest.mark.parametrize("size", [(16, 16), (24, 32), (8, 12), (20, 8)])
def test_dynamic_img_size_interpolates_the_position_embeddings_as_torch_does(
    size: tuple[int, int],
) -> None:
    """At run time, another size gives what a static model of that size gives when its grid is
    torch's bicubic, antialiased interpolation of the 4x4 one (rows and columns kept apart)."""
    model = tiny_vit(dynamic_img_size=True)
    with torch.no_grad():  # large and random: every position matters to the output
        model.position_embedding.normal_()
    rows, cols = size[0] // 4, size[1] // 4
    grid = model.position_embedding[:, 1:].detach().reshape(1, 4, 4, 12).permute(0, 3, 1, 2)
    grid = F.interpolate(
        grid, size=(rows, cols), mode="bicubic", align_corners=False, antialias=True
    )
    state = model.state_dict()
    state["position_embedding"] = torch.cat(
        [state["position_embedding"][:, :1], grid.permute(0, 2, 3, 1).reshape(1, rows * cols, 12)],
        dim=1,
    )
    static = tiny_vit(img_size=size)
    static.load_state_dict(state)
    images = torch.randn(2, 3, *size)
    torch.testing.assert_close(model(images), static(images))


def test_non_square_images_and_patches() -> None:
    model = ViT(
        img_size=(32, 48),
        patch_size=(8, 12),
        embedding_dim=8,
        num_heads=2,
        mlp_size=8,
        num_transformer_layers=1,
        num_classes=3,
    )
    assert model.forward_features(torch.randn(1, 3, 32, 48)).shape == (1, 1 + 16, 8)


def test_create_model_and_from_preset_agree() -> None:
    a = vitlib.create_model("ViT-Ti/4", img_size=16, num_classes=2)
    b = ViT.from_preset("vit_tiny_patch4_16", num_classes=2)
    assert a.config == b.config


def test_from_config_rejects_other_types() -> None:
    with pytest.raises(TypeError, match=r"config must be a vitlib\.ViTConfig \(or None\), got"):
        ViT.from_config({"num_classes": 3})  # type: ignore[arg-type]


def test_attn_dropout_is_passed_to_every_block() -> None:
    model = ViT(**TINY, attn_dropout=0.3)
    blocks = [
        block for block in model.transformer_encoder if isinstance(block, TransformerEncoderBlock)
    ]
    assert len(blocks) == 2
    assert all(block.msa_block.attn_dropout == 0.3 for block in blocks)


def test_drop_path_rises_linearly_to_the_rate() -> None:
    model = ViT(**{**TINY, "num_transformer_layers": 3}, drop_path_rate=0.2)
    rates = [getattr(block.drop_path, "rate", 0.0) for block in model.transformer_encoder]
    assert rates == pytest.approx([0.0, 0.1, 0.2])


def test_no_weight_decay_names_the_tokens_and_embeddings() -> None:
    assert ViT(**TINY, num_register_tokens=1).no_weight_decay() == {
        "class_embedding",
        "register_tokens",
        "position_embedding",
    }


def test_invalid_constructor_values_raise() -> None:
    with pytest.raises(ConfigError, match="pool must be one of"):
        ViT(**TINY, pool="max")
