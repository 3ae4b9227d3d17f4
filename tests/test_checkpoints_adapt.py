"""Loading at another resolution, class count or channel count; run-time resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file

from vitlib import (
    AdaptedCheckpointWarning,
    InputShapeError,
    load_pretrained,
    resample_position_embedding,
)
from vitlib.checkpoints import adapt_input_channels

FIXTURES = Path(__file__).parent / "fixtures" / "reference"
TIMM = FIXTURES / "timm_token" / "state_dict.safetensors"


@pytest.mark.parametrize("img_size", [48, 64, (32, 48), (16, 24)])
def test_another_image_size_resamples_the_position_embeddings(
    img_size: int | tuple[int, int],
) -> None:
    original = load_pretrained(TIMM, num_heads=3)
    model = load_pretrained(TIMM, num_heads=3, img_size=img_size)
    expected = resample_position_embedding(
        original.position_embedding.detach(), (4, 4), model.config.grid_size
    )
    torch.testing.assert_close(model.position_embedding.detach(), expected)
    torch.testing.assert_close(model.position_embedding[:, :1], original.position_embedding[:, :1])
    height, width = model.config.image_hw
    assert model.eval()(torch.randn(1, 3, height, width)).shape == (1, 5)


def test_the_same_size_changes_nothing() -> None:
    state = load_file(str(TIMM))
    model = load_pretrained(state, num_heads=3, img_size=32)
    assert torch.equal(model.position_embedding.detach(), state["pos_embed"])


def test_resampling_a_constant_grid_keeps_it_constant() -> None:
    grid = torch.full((1, 1 + 16, 8), 0.5)
    out = resample_position_embedding(grid, (4, 4), (7, 5))
    assert out.shape == (1, 1 + 35, 8)
    torch.testing.assert_close(out, torch.full_like(out, 0.5))


def test_another_class_count_reinitialises_the_head_with_a_warning() -> None:
    original = load_pretrained(TIMM, num_heads=3)
    with pytest.warns(
        AdaptedCheckpointWarning, match=r"head re-initialised for 7 classes \(checkpoint: 5\)"
    ):
        model = load_pretrained(TIMM, num_heads=3, num_classes=7)
    assert model.head.weight.shape == (7, 48)
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(
        model.eval().forward_features(images), original.eval().forward_features(images)
    )


def test_num_classes_zero_gives_a_feature_extractor_silently(
    recwarn: pytest.WarningsRecorder,
) -> None:
    model = load_pretrained(TIMM, num_heads=3, num_classes=0)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 48)
    assert not [w for w in recwarn if issubclass(w.category, AdaptedCheckpointWarning)]


def test_dropping_pre_logits_warns_and_resets_the_head() -> None:
    path = FIXTURES / "torchvision_prelogits" / "state_dict.safetensors"
    with pytest.warns(AdaptedCheckpointWarning, match=r"pre-logits layer \(24\) dropped"):
        model = load_pretrained(path, num_heads=3, representation_size=None)
    assert model.head.weight.shape == (5, 48)


def test_one_channel_kernel_is_the_sum_so_gray_images_match() -> None:
    rgb = load_pretrained(TIMM, num_heads=3).eval()
    gray = load_pretrained(TIMM, num_heads=3, in_channels=1).eval()
    image = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(gray(image), rgb(image.expand(-1, 3, -1, -1)), atol=1e-5, rtol=1e-5)


@given(channels=st.integers(1, 9))
def test_channel_adaptation_rule(channels: int) -> None:
    weight = torch.randn(4, 3, 2, 2)
    adapted = adapt_input_channels(weight, channels)
    assert adapted.shape == (4, channels, 2, 2)
    if channels % 3 == 0:  # exact for repeated channels: same response to a repeated image
        image = torch.randn(3, 2, 2)
        repeated = image.repeat(channels // 3, 1, 1)
        torch.testing.assert_close(
            (adapted[0] * repeated).sum(), (weight[0] * image).sum(), atol=1e-4, rtol=1e-4
        )


def test_dynamic_img_size_on_load_accepts_other_sizes_at_run_time() -> None:
    model = load_pretrained(TIMM, num_heads=3, dynamic_img_size=True).eval()
    assert model(torch.randn(1, 3, 48, 40)).shape == (1, 5)
    static = load_pretrained(TIMM, num_heads=3).eval()
    with pytest.raises(InputShapeError, match="dynamic_img_size=True"):
        static(torch.randn(1, 3, 48, 40))


def test_run_time_resampling_equals_load_time_resampling() -> None:
    dynamic = load_pretrained(TIMM, num_heads=3, dynamic_img_size=True).eval()
    resized = load_pretrained(TIMM, num_heads=3, img_size=48).eval()
    images = torch.randn(2, 3, 48, 48)
    torch.testing.assert_close(dynamic(images), resized(images))


def test_a_model_can_be_adapted_into_a_copy() -> None:
    original = load_pretrained(TIMM, num_heads=3, layer_norm_eps=1e-6, pool="mean")
    with pytest.warns(AdaptedCheckpointWarning):
        adapted = load_pretrained(original, num_classes=2, img_size=48)
    assert adapted.config == original.config.replace(num_classes=2, img_size=48)
    assert adapted.position_embedding.shape == (1, 37, 48)
    assert torch.equal(adapted.norm.weight, original.norm.weight)
    assert adapted.norm.weight is not original.norm.weight
