"""Loading at another resolution, class count or channel count; run-time resolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import load_file

from vitlib import AdaptedCheckpointWarning, InputShapeError, load_pretrained
from vitlib.checkpoints import adapt_input_channels
from vitlib.position import resample_position_embedding

from .helpers import FIXTURES

TIMM = FIXTURES / "timm_token" / "state_dict.safetensors"
NONSQUARE = FIXTURES / "timm_nonsquare" / "state_dict.safetensors"  # a 4x6 grid, 1 channel


def interpolated(
    position_embedding: torch.Tensor,
    old_grid: tuple[int, int],
    new_grid: tuple[int, int],
    *,
    prefix: int = 1,
    mode: str = "bicubic",
    antialias: bool = True,
) -> torch.Tensor:
    """The reference: torch's own 2-D interpolation of the row-major grid (timm's choice of
    bicubic, antialiased), prefix tokens kept, written here without vitlib."""
    rows, cols = old_grid
    dim = position_embedding.shape[-1]
    grid = position_embedding[:, prefix:].reshape(1, rows, cols, dim).permute(0, 3, 1, 2)
    corners = None if mode == "nearest" else False
    grid = F.interpolate(grid, size=new_grid, mode=mode, align_corners=corners, antialias=antialias)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim)
    return torch.cat([position_embedding[:, :prefix], grid], dim=1)


@pytest.mark.parametrize("img_size", [48, 64, (32, 48), (16, 24), (48, 32), (24, 16)])
def test_another_image_size_interpolates_the_grid_as_torch_does(
    img_size: int | tuple[int, int],
) -> None:
    checkpoint = load_file(str(TIMM))["pos_embed"]  # random values: no symmetry to hide behind
    model = load_pretrained(TIMM, num_heads=3, img_size=img_size)
    expected = interpolated(checkpoint, (4, 4), model.config.grid_size)
    torch.testing.assert_close(model.position_embedding.detach(), expected)
    height, width = model.config.image_hw
    assert model.eval()(torch.randn(1, 3, height, width)).shape == (1, 5)


@pytest.mark.parametrize("img_size", [32, 64, (16, 24), (48, 32), (64, 96)])
def test_a_non_square_grid_is_interpolated_rows_as_rows(img_size: int | tuple[int, int]) -> None:
    checkpoint = load_file(str(NONSQUARE))["pos_embed"]  # 4 rows, 6 columns
    native = load_pretrained(NONSQUARE, num_heads=3, pool="mean", img_size=(32, 48))
    model = load_pretrained(native, img_size=img_size)
    expected = interpolated(checkpoint, (4, 6), model.config.grid_size)
    torch.testing.assert_close(model.position_embedding.detach(), expected)
    height, width = model.config.image_hw
    assert model.eval()(torch.randn(1, 1, height, width)).shape == (1, 4)


def test_the_reference_tells_the_interpolation_choices_apart() -> None:
    """The grids above are such that another mode, no antialias or a transposed grid would show."""
    checkpoint = load_file(str(NONSQUARE))["pos_embed"]
    for new_grid in ((2, 3), (6, 4)):
        expected = interpolated(checkpoint, (4, 6), new_grid)
        others = [interpolated(checkpoint, (4, 6), new_grid, mode="bilinear")]
        others.append(interpolated(checkpoint, (4, 6), new_grid, mode="nearest", antialias=False))
        if new_grid == (2, 3):  # antialias only matters when shrinking
            others.append(interpolated(checkpoint, (4, 6), new_grid, antialias=False))
        transposed = checkpoint[:, 1:].reshape(1, 4, 6, -1).transpose(1, 2).reshape(1, 24, -1)
        others.append(interpolated(torch.cat([checkpoint[:, :1], transposed], 1), (6, 4), new_grid))
        for other in others:
            assert not torch.allclose(other, expected, atol=1e-3)


@given(
    old_grid=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    new_grid=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    prefix=st.integers(0, 3),
)
def test_resample_position_embedding_is_torchs_bicubic_interpolation(
    old_grid: tuple[int, int], new_grid: tuple[int, int], prefix: int
) -> None:
    generator = torch.Generator().manual_seed(old_grid[0] * 100 + old_grid[1] * 10 + prefix)
    embedding = torch.randn(1, prefix + old_grid[0] * old_grid[1], 6, generator=generator)
    out = resample_position_embedding(embedding, old_grid, new_grid, num_prefix_tokens=prefix)
    torch.testing.assert_close(out, interpolated(embedding, old_grid, new_grid, prefix=prefix))


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


@pytest.mark.parametrize("channels", range(1, 10))
def test_channel_adaptation_rule(channels: int) -> None:
    """One channel: the sum of the old ones. Otherwise the old channels repeat cyclically,
    scaled by old / new channels, so a repeated image gives the old response."""
    weight = torch.randn(4, 3, 2, 2)
    adapted = adapt_input_channels(weight, channels)
    if channels == 1:
        expected = weight[:, 0:1] + weight[:, 1:2] + weight[:, 2:3]
    else:
        expected = torch.stack([weight[:, k % 3] for k in range(channels)], dim=1) * 3 / channels
    torch.testing.assert_close(adapted, expected, atol=0, rtol=1e-6)
    if channels % 3 == 0:  # exact for repeated channels: same response to a repeated image
        images = torch.randn(5, 3, 2, 2)
        repeated = images.repeat(1, channels // 3, 1, 1)
        torch.testing.assert_close(
            torch.einsum("dchw,nchw->nd", adapted, repeated),
            torch.einsum("dchw,nchw->nd", weight, images),
            atol=1e-5,
            rtol=1e-5,
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
