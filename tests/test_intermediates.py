"""`ViT.forward_intermediates`: the chosen blocks' outputs, as running the blocks by hand gives."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor

from vitlib import ViT, ViTConfig

from .helpers import tiny_vit
from .strategies import small_configs


def _blocks_by_hand(model: ViT, images: Tensor) -> list[Tensor]:
    """Every encoder block's output, one block at a time."""
    outputs, tokens = [], model.embed(images)
    for block in model.transformer_encoder:
        tokens = block(tokens)
        outputs.append(tokens)
    return outputs


def _as_map(tokens: Tensor, prefix: int, rows: int, cols: int) -> Tensor:
    """Patch tokens (B, prefix + rows * cols, D) as (B, D, rows, cols), without einops."""
    patches = tokens[:, prefix:]
    return patches.transpose(1, 2).reshape(len(tokens), tokens.shape[-1], rows, cols)


@pytest.mark.slow
@given(config=small_configs(), data=st.data())
def test_every_block_output_is_the_one_running_the_blocks_by_hand_gives(
    config: ViTConfig, data: st.DataObject
) -> None:
    model = ViT.from_config(config).eval()
    rows, cols = config.grid_size
    if config.dynamic_img_size:  # non-square and off-size inputs too
        rows, cols = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    patch_h, patch_w = config.patch_hw
    images = torch.randn(2, config.in_channels, rows * patch_h, cols * patch_w)
    prefix = config.num_prefix_tokens
    with torch.no_grad():
        expected = _blocks_by_hand(model, images)
        tokens = model.forward_intermediates(images)
        normed = model.forward_intermediates(images, norm=True, output="nchw")
    assert tokens.indices == tuple(range(config.num_transformer_layers))
    assert tokens.features is not None
    torch.testing.assert_close(tokens.features, model.norm(expected[-1]), rtol=0, atol=0)
    for index, block_output in enumerate(expected):
        torch.testing.assert_close(tokens.intermediates[index], block_output, rtol=0, atol=0)
        torch.testing.assert_close(tokens.prefix_tokens[index], block_output[:, :prefix])
        torch.testing.assert_close(
            normed.intermediates[index], _as_map(model.norm(block_output), prefix, rows, cols)
        )
        normed_prefix = model.norm(block_output)[:, :prefix]
        torch.testing.assert_close(normed.prefix_tokens[index], normed_prefix)


def test_the_last_block_normed_is_forward_features() -> None:
    model, images = tiny_vit(), torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        result = model.forward_intermediates(images, [-1], norm=True)
        torch.testing.assert_close(result.intermediates[0], model.forward_features(images))
        torch.testing.assert_close(result.features, model.forward_features(images))


@pytest.mark.parametrize(
    ("indices", "expected"),
    [
        (None, (0, 1, 2, 3)),
        (1, (3,)),
        (3, (1, 2, 3)),
        (4, (0, 1, 2, 3)),
        ([0, 2], (0, 2)),
        ([-1, 0], (3, 0)),  # the order given is kept
        ((1, 1), (1, 1)),
        (range(2), (0, 1)),
    ],
)
def test_indices_choose_blocks_as_timm_and_dinov2_do(indices: Any, expected: tuple[int]) -> None:
    model, images = tiny_vit(num_transformer_layers=4), torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        every = _blocks_by_hand(model, images)
        result = model.forward_intermediates(images, indices)
    assert result.indices == expected
    assert len(result.intermediates) == len(expected)
    for taken, index in zip(result.intermediates, expected, strict=True):
        torch.testing.assert_close(taken, every[index], rtol=0, atol=0)


def test_nchw_maps_have_the_patch_grid_of_non_square_inputs() -> None:
    model = tiny_vit(dynamic_img_size=True, num_register_tokens=2)
    images = torch.randn(2, 3, 8, 20)
    with torch.no_grad():
        result = model.forward_intermediates(images, [0, 1], output="nchw")
    assert [tuple(m.shape) for m in result.intermediates] == [(2, 12, 2, 5)] * 2
    assert [tuple(p.shape) for p in result.prefix_tokens] == [(2, 3, 12)] * 2
    assert result.features is not None
    assert result.features.shape == (2, 3 + 10, 12)


def test_mean_pooling_without_class_token_has_no_prefix_tokens() -> None:
    model = tiny_vit(class_token=False, pool="mean")
    with torch.no_grad():
        result = model.forward_intermediates(torch.randn(2, 3, 16, 16), output="nchw")
    assert [tuple(p.shape) for p in result.prefix_tokens] == [(2, 0, 12)] * 2
    assert [tuple(m.shape) for m in result.intermediates] == [(2, 12, 4, 4)] * 2


def test_stop_early_runs_no_block_after_the_last_one_asked_for() -> None:
    model = tiny_vit(num_transformer_layers=4)
    calls: list[int] = []
    for index, block in enumerate(model.transformer_encoder):
        block.register_forward_hook(lambda *_, index=index: calls.append(index))
    with torch.no_grad():
        early = model.forward_intermediates(torch.randn(1, 3, 16, 16), [1, 0], stop_early=True)
    assert calls == [0, 1]
    assert early.features is None
    calls.clear()
    with torch.no_grad():
        model.forward_intermediates(torch.randn(1, 3, 16, 16), [1, 0])
    assert calls == [0, 1, 2, 3]


def test_gradients_with_checkpointing_are_the_same() -> None:
    model = tiny_vit()
    images = torch.randn(2, 3, 16, 16)

    def gradient() -> list[Tensor]:
        model.zero_grad()
        result = model.forward_intermediates(images, [0, 1], output="nchw")
        sum(t.square().sum() for t in result.intermediates).backward()  # type: ignore[union-attr]
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain = gradient()
    model.set_grad_checkpointing(True)
    recomputed = gradient()
    assert len(plain) == len(recomputed) > 0
    for expected, actual in zip(plain, recomputed, strict=True):
        torch.testing.assert_close(actual, expected)


@pytest.mark.slow
def test_compiles_into_one_graph() -> None:
    model, images = tiny_vit(num_register_tokens=1), torch.randn(2, 3, 16, 16)
    compiled = torch.compile(model.forward_intermediates, fullgraph=True, backend="eager")
    with torch.no_grad():
        expected = model.forward_intermediates(images, [0, -1], norm=True, output="nchw")
        actual = compiled(images, [0, -1], norm=True, output="nchw")
    torch.testing.assert_close(actual.intermediates, expected.intermediates)
    torch.testing.assert_close(actual.features, expected.features)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"indices": 0}, ValueError, r"indices=0 asks for the last 0 blocks .* from 1 to 2"),
        ({"indices": -1}, ValueError, r"indices=-1 asks .* \(e.g. \[-1\] for the last block"),
        ({"indices": 3}, ValueError, r"indices=3 .* model with 2; give an int from 1 to 2"),
        ({"indices": [2]}, ValueError, r"holds \[2\], outside the 2 blocks .* from 0 to 1"),
        ({"indices": [-3]}, ValueError, r"holds \[-3\]"),
        ({"indices": []}, ValueError, r"indices is empty"),
        (
            {"indices": "1"},
            TypeError,
            r"indices must be None, an int or a sequence of ints .*, got '1' \(str\)",
        ),
        ({"indices": 1.0}, TypeError, r"got 1.0 \(float\)"),
        ({"indices": [0, True]}, TypeError, r"each of indices must be an int, got True \(bool\)"),
        ({"indices": True}, TypeError, r"got True \(bool\)"),
        (
            {"output": "NCHW"},
            ValueError,
            r"output must be one of 'tokens', 'nchw', got 'NCHW' \(did you",
        ),
        ({"norm": "yes"}, TypeError, r"norm must be a bool"),
        ({"stop_early": 1}, TypeError, r"stop_early must be a bool"),
    ],
)
def test_bad_arguments_are_refused_with_the_fix(
    arguments: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        tiny_vit().forward_intermediates(torch.randn(1, 3, 16, 16), **arguments)


def test_images_are_checked_as_forward_checks_them() -> None:
    with pytest.raises(ValueError, match=r"expected images of size 16x16, got 8x8"):
        tiny_vit().forward_intermediates(torch.randn(1, 3, 8, 8))
