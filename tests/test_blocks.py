"""The four blocks: shapes, the two attention paths, dropout, gradients, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from vitlib import (
    ConfigError,
    DropPath,
    LayerScale,
    MLPBlock,
    MultiheadSelfAttentionBlock,
    PatchEmbedding,
    TransformerEncoderBlock,
)


@given(
    batch=st.integers(1, 3),
    channels=st.integers(1, 4),
    patch=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    grid=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    dim=st.integers(1, 16),
)
def test_patch_embedding_shape(
    batch: int, channels: int, patch: tuple[int, int], grid: tuple[int, int], dim: int
) -> None:
    """(B, C, H, W) -> (B, N, D) for any patch size dividing any non-square image."""
    embedding = PatchEmbedding(in_channels=channels, patch_size=patch, embedding_dim=dim)
    images = torch.randn(batch, channels, grid[0] * patch[0], grid[1] * patch[1])
    assert embedding(images).shape == (batch, grid[0] * grid[1], dim)


def test_patch_embedding_is_the_linear_map_of_each_flattened_patch() -> None:
    """Eq. 1: token (r, c) is E applied to patch (r, c), rows first."""
    embedding = PatchEmbedding(in_channels=2, patch_size=(2, 3), embedding_dim=5)
    images = torch.randn(1, 2, 4, 6)
    tokens = embedding(images)
    weight = embedding.patcher.weight.reshape(5, -1)
    for row in range(2):
        for col in range(2):
            patch = images[0, :, 2 * row : 2 * row + 2, 3 * col : 3 * col + 3].reshape(-1)
            assert embedding.patcher.bias is not None
            expected = weight @ patch + embedding.patcher.bias
            torch.testing.assert_close(tokens[0, row * 2 + col], expected)


@given(
    batch=st.integers(1, 3),
    tokens=st.integers(1, 12),
    heads=st.integers(1, 4),
    head_dim=st.integers(1, 8),
    qkv_bias=st.booleans(),
)
def test_attention_paths_agree_and_weights_are_distributions(
    batch: int, tokens: int, heads: int, head_dim: int, qkv_bias: bool
) -> None:
    """The fused SDPA path and the explicit path give the same output (fp32, 1e-5)."""
    torch.manual_seed(0)
    block = MultiheadSelfAttentionBlock(heads * head_dim, heads, qkv_bias=qkv_bias).eval()
    x = torch.randn(batch, tokens, heads * head_dim)
    fast = block(x)
    explicit, weights = block(x, need_weights=True)
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-5)
    assert weights.shape == (batch, heads, tokens, tokens)
    torch.testing.assert_close(weights.sum(-1), torch.ones(batch, heads, tokens))


def test_attention_equals_torch_multihead_attention() -> None:
    """Same maths as nn.MultiheadAttention (the chapter's module) with the same weights."""
    torch.manual_seed(0)
    block = MultiheadSelfAttentionBlock(12, 3).eval()
    reference = torch.nn.MultiheadAttention(12, 3, batch_first=True).eval()
    with torch.no_grad():
        reference.in_proj_weight.copy_(block.qkv.weight)
        reference.in_proj_bias.copy_(block.qkv.bias.uniform_())
        reference.out_proj.weight.copy_(block.out_proj.weight)
        reference.out_proj.bias.copy_(block.out_proj.bias.uniform_())
    x = torch.randn(2, 5, 12)
    normed = block.layer_norm(x)
    expected, expected_weights = reference(normed, normed, normed, average_attn_weights=False)
    out, weights = block(x, need_weights=True)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(weights, expected_weights)


def test_attention_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    block = MultiheadSelfAttentionBlock(8, 2, attn_dropout=0.5)
    x = torch.randn(2, 6, 8)
    block.train()
    assert not torch.equal(block(x), block(x))
    block.eval()
    assert torch.equal(block(x), block(x))
    torch.testing.assert_close(block(x), block(x, need_weights=True)[0], atol=1e-5, rtol=1e-5)


def test_attention_rejects_indivisible_heads() -> None:
    with pytest.raises(ConfigError, match="embedding_dim 10 is not divisible by num_heads 3"):
        MultiheadSelfAttentionBlock(10, 3)


def test_mlp_block_matches_equation_3() -> None:
    torch.manual_seed(0)
    block = MLPBlock(embedding_dim=6, mlp_size=10, dropout=0.0)
    x = torch.randn(2, 3, 6)
    hidden = torch.nn.functional.gelu(block.fc1(block.layer_norm(x)))
    torch.testing.assert_close(block(x), block.fc2(hidden))


def test_mlp_dropout_only_in_training() -> None:
    block = MLPBlock(8, 16, dropout=0.5)
    x = torch.randn(4, 3, 8)
    assert not torch.equal(block.train()(x), block(x))
    assert torch.equal(block.eval()(x), block(x))


def test_encoder_block_is_equations_2_and_3_with_residuals() -> None:
    torch.manual_seed(0)
    block = TransformerEncoderBlock(8, 2, 16, mlp_dropout=0.0).eval()
    x = torch.randn(2, 5, 8)
    after_attention = block.msa_block(x) + x
    torch.testing.assert_close(block(x), block.mlp_block(after_attention) + after_attention)


def test_disabled_options_are_identities() -> None:
    block = TransformerEncoderBlock(8, 2, 16)
    assert isinstance(block.drop_path, torch.nn.Identity)
    assert isinstance(block.msa_scale, torch.nn.Identity)
    assert isinstance(block.mlp_scale, torch.nn.Identity)
    enabled = TransformerEncoderBlock(8, 2, 16, drop_path=0.2, layer_scale_init=1e-5)
    assert isinstance(enabled.drop_path, DropPath)
    assert isinstance(enabled.msa_scale, LayerScale)


def test_layer_scale_starts_near_identity_residual() -> None:
    block = TransformerEncoderBlock(8, 2, 16, mlp_dropout=0.0, layer_scale_init=1e-6).eval()
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(block(x), x, atol=1e-4, rtol=0)


def test_drop_path_keeps_the_expectation_and_is_off_in_eval() -> None:
    torch.manual_seed(0)
    drop = DropPath(0.25)
    x = torch.ones(20_000, 1)
    out = drop.train()(x)
    torch.testing.assert_close(out.unique(), torch.tensor([0.0, 1 / 0.75]))
    assert out.mean().item() == pytest.approx(1.0, abs=0.03)
    assert torch.equal(drop.eval()(x), x)
    with pytest.raises(ConfigError, match=r"drop_path must be a number in \[0, 1\), got 1.0"):
        DropPath(1.0)


def test_drop_path_drops_whole_samples_never_single_elements() -> None:
    torch.manual_seed(0)
    x = torch.rand(400, 5, 7) + 1.0  # no zero anywhere
    out = DropPath(0.5).train()(x)
    dropped = (out == 0).flatten(1).all(dim=1)
    kept = torch.isclose(out, x / 0.5).flatten(1).all(dim=1)
    assert bool((dropped | kept).all()), "each sample is either dropped whole or kept whole"
    assert 120 < int(dropped.sum()) < 280


@given(
    depth=st.integers(1, 3),
    heads=st.integers(1, 3),
    head_dim=st.integers(2, 6),
    mlp_size=st.integers(1, 12),
    drop_path=st.sampled_from([0.0, 0.3]),
    qkv_bias=st.booleans(),
)
def test_gradients_reach_every_block_parameter_through_a_stack(
    depth: int, heads: int, head_dim: int, mlp_size: int, drop_path: float, qkv_bias: bool
) -> None:
    torch.manual_seed(1)
    dim = heads * head_dim
    stack = torch.nn.Sequential(
        *(
            TransformerEncoderBlock(
                dim, heads, mlp_size, drop_path=drop_path, layer_scale_init=0.5, qkv_bias=qkv_bias
            )
            for _ in range(depth)
        )
    )
    stack(torch.randn(16, 5, dim)).square().sum().backward()  # 16 samples: some path is kept
    for name, parameter in stack.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name
