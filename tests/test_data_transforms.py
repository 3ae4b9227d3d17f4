"""train_transform and eval_transform: torch-only crops, flips and normalisation of PIL images."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vitlib.data import IMAGENET_MEAN, IMAGENET_STD, Preprocessing, train_transform
from vitlib.data.preprocessing import Interpolation, ResizeRule, cover_size
from vitlib.data.transforms import (
    HIGH_PRECISION_MODES,
    apply_exif_orientation,
    pil_to_tensor,
    random_resized_crop_box,
    resize,
)
from vitlib.errors import DataError

sides = st.integers(min_value=1, max_value=160)
output_sides = st.integers(min_value=1, max_value=48)


def noise_image(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = torch.randint(
        0, 256, (height, width, 3), generator=torch.Generator().manual_seed(seed)
    )
    return Image.fromarray(pixels.to(torch.uint8).numpy())


@settings(max_examples=25, deadline=None)
@given(width=sides, height=sides, image_size=output_sides, seed=st.integers(0, 2**31))
def test_train_output_is_a_float32_square(
    width: int, height: int, image_size: int, seed: int
) -> None:
    transform = train_transform(image_size, generator=torch.Generator().manual_seed(seed))
    output = transform(Image.new("RGB", (width, height)))
    assert output.shape == (3, image_size, image_size)
    assert output.dtype == torch.float32


@settings(max_examples=25, deadline=None)
@given(width=sides, height=sides, image_size=output_sides)
def test_eval_output_is_a_float32_square(width: int, height: int, image_size: int) -> None:
    output = Preprocessing((image_size, image_size)).transform()(Image.new("RGB", (width, height)))
    assert output.shape == (3, image_size, image_size)
    assert output.dtype == torch.float32


@settings(max_examples=50, deadline=None)
@given(width=sides, height=sides, seed=st.integers(0, 2**31))
def test_crop_box_lies_inside_the_image(width: int, height: int, seed: int) -> None:
    top, left, crop_height, crop_width = random_resized_crop_box(
        height,
        width,
        scale=(0.08, 1.0),
        ratio=(3 / 4, 4 / 3),
        generator=torch.Generator().manual_seed(seed),
    )
    assert crop_height > 0
    assert crop_width > 0
    assert 0 <= top <= height - crop_height
    assert 0 <= left <= width - crop_width


def test_crop_falls_back_to_the_centre_when_no_attempt_fits() -> None:
    """A 2:1 box of the full area never fits a square, so the centred full-width 2:1 box is used."""
    box = random_resized_crop_box(100, 100, scale=(1.0, 1.0), ratio=(2.0, 2.0))
    assert box == (25, 0, 50, 100)


def test_train_transform_repeats_with_the_same_generator_seed() -> None:
    image = noise_image(64, 48)
    first = train_transform(32, generator=torch.Generator().manual_seed(1))(image)
    second = train_transform(32, generator=torch.Generator().manual_seed(1))(image)
    other = train_transform(32, generator=torch.Generator().manual_seed(2))(image)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_train_transform_repeats_under_torch_manual_seed() -> None:
    image, transform = noise_image(64, 48), train_transform(32)
    torch.manual_seed(5)
    first = transform(image)
    torch.manual_seed(5)
    assert torch.equal(transform(image), first)


def test_full_crops_are_the_resized_image_or_its_mirror() -> None:
    image = noise_image(40, 40)
    resized = Preprocessing((20, 20), crop_ratio=1.0).transform()(image)
    transform = train_transform(20, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.manual_seed(0)
    outputs = [transform(image) for _ in range(12)]
    flipped = [torch.allclose(output, resized.flip(-1), atol=1e-5) for output in outputs]
    kept = [torch.allclose(output, resized, atol=1e-5) for output in outputs]
    assert all(a or b for a, b in zip(flipped, kept, strict=True))
    assert any(flipped)
    assert any(kept)


def test_eval_transform_is_deterministic() -> None:
    image, transform = noise_image(70, 50), Preprocessing((32, 32)).transform()
    assert torch.equal(transform(image), transform(image))


def test_eval_resizes_the_shorter_side_to_size_over_ratio() -> None:
    assert cover_size((480, 640), (224, 224), 0.875) == (256, 341)
    assert cover_size((640, 480), (224, 224), 1.0) == (298, 224)


@given(
    source=st.tuples(st.integers(1, 400), st.integers(1, 400)),
    target=st.tuples(st.integers(1, 64), st.integers(1, 64)),
    ratio=st.floats(0.1, 1.0),
)
def test_the_resize_covers_any_target_from_any_aspect_ratio(
    source: tuple[int, int], target: tuple[int, int], ratio: float
) -> None:
    """Against the rule written independently: scale the source by max(H/h, W/w) / ratio, so
    that the target fits inside with a ratio-wide margin along the side that binds. The result
    covers the target, misses that scale by less than a pixel on the binding side and keeps the
    aspect ratio to within a pixel."""
    (height, width), (target_h, target_w) = source, target
    scale = max(target_h / height, target_w / width) / ratio
    covered_h, covered_w = cover_size(source, target, ratio)
    assert covered_h >= target_h
    assert covered_w >= target_w
    if target_h / height >= target_w / width:
        binding, exact, side = covered_h, height * scale, target_h
    else:
        binding, exact, side = covered_w, width * scale, target_w
    assert exact - 1 < binding <= max(exact, side) + 1e-9
    assert abs(covered_h * width - covered_w * height) <= max(height, width)


@settings(max_examples=30)
@given(
    source=st.tuples(st.integers(1, 120), st.integers(1, 120)),
    target=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    ratio=st.floats(0.1, 1.0),
)
def test_a_centre_crop_of_any_target_size_has_that_size(
    source: tuple[int, int], target: tuple[int, int], ratio: float
) -> None:
    image = noise_image(source[1], source[0])
    prepared = Preprocessing(target, crop_ratio=ratio).transform()(image)
    assert prepared.shape == (3, *target)


def test_eval_keeps_the_centre() -> None:
    """A centred square survives the 0.875 centre crop; a 4-pixel border does not."""
    pixels = torch.zeros(64, 64, 3, dtype=torch.uint8)
    pixels[4:-4, 4:-4] = 255
    output = Preprocessing((56, 56), mean=(0, 0, 0), std=(1, 1, 1)).transform()(
        Image.fromarray(pixels.numpy())
    )
    assert torch.allclose(output, torch.ones_like(output), atol=1e-5)


def test_normalisation_uses_mean_and_std() -> None:
    grey = Image.new("RGB", (10, 10), (51, 102, 153))
    output = Preprocessing((8, 8), crop_ratio=1.0).transform()(grey)
    for channel, value in enumerate((51, 102, 153)):
        expected = (value / 255 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        assert torch.allclose(output[channel], torch.full((8, 8), expected), atol=1e-5)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "1"])
def test_any_pil_mode_becomes_three_channels(mode: str) -> None:
    assert pil_to_tensor(Image.new(mode, (5, 4))).shape == (3, 4, 5)
    assert train_transform(8)(Image.new(mode, (5, 4))).shape == (3, 8, 8)


def test_pil_to_tensor_scales_to_unit_interval() -> None:
    pixels = pil_to_tensor(Image.new("RGB", (2, 2), (0, 255, 51)))
    assert pixels[:, 0, 0].tolist() == pytest.approx([0.0, 1.0, 0.2])


def test_transforms_pickle_for_dataloader_workers() -> None:
    image = noise_image(30, 30)
    for transform in (train_transform(16), Preprocessing((16, 16)).transform()):
        clone = pickle.loads(pickle.dumps(transform))
        torch.manual_seed(0)
        expected = transform(image)
        torch.manual_seed(0)
        assert torch.equal(clone(image), expected)


def test_a_tensor_input_is_refused_with_the_fix() -> None:
    with pytest.raises(
        TypeError,
        match=r"image must be a PIL.Image.Image \(open the file .*\(Tensor\)",
    ):
        Preprocessing((8, 8)).transform()(torch.zeros(3, 8, 8))  # type: ignore[arg-type]


@pytest.mark.parametrize("image_size", [0, -3])
def test_non_positive_image_size_is_refused(image_size: int) -> None:
    with pytest.raises(ValueError, match=rf"image_size must be an int >= 1, got {image_size}"):
        train_transform(image_size)
    with pytest.raises(ValueError, match=rf"image_size\[0\] must be an int >= 1, got {image_size}"):
        Preprocessing((image_size, image_size))


def test_bool_image_size_is_refused() -> None:
    with pytest.raises(TypeError, match=r"image_size must be an int >= 1 .*, got True \(bool\)"):
        train_transform(True)


@pytest.mark.parametrize("scale", [(0.0, 1.0), (0.5, 0.2), (0.5, 1.5)])
def test_bad_scale_is_refused(scale: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match=r"scale must be (a pair|a finite number) .* got"):
        train_transform(8, scale=scale)


def test_bad_ratio_is_refused() -> None:
    with pytest.raises(ValueError, match=r"ratio must be a pair"):
        train_transform(8, ratio=(4 / 3, 3 / 4))


@pytest.mark.parametrize("crop_ratio", [0.0, 1.5, -0.5])
def test_crop_ratio_outside_unit_interval_is_refused(crop_ratio: float) -> None:
    with pytest.raises(
        ValueError, match=rf"crop_ratio must be a number in \[0.1, 1\], got {crop_ratio}"
    ):
        Preprocessing((8, 8), crop_ratio=crop_ratio)


def test_mean_and_std_need_one_value_per_channel() -> None:
    with pytest.raises(ValueError, match=r"std must be 1 number\(s\), one per channel, got 3"):
        train_transform(8, mean=(0.5,))


def test_std_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"each of std must be a number in \[0.001, 1000\], got 0"):
        Preprocessing((8, 8), std=(0.2, 0.0, 0.2))


def test_missing_pillow_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    image = Image.new("RGB", (4, 4))
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r'pip install "vitlib\[data\]"'):
        pil_to_tensor(image)


# --- 16-bit and float greyscale images (D10) ---------------------------------------------------


def sixteen_bit_image(values: np.ndarray, mode: str) -> Image.Image:
    """A greyscale image of ``values`` (uint16, H x W) in one of Pillow's 16/32-bit modes."""
    height, width = values.shape
    if mode == "I":
        return Image.fromarray(values.astype(np.int32))
    byte_order = {"I;16": "<", "I;16L": "<", "I;16B": ">", "I;16N": "="}[mode]
    return Image.frombytes(mode, (width, height), values.astype(f"{byte_order}u2").tobytes())


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I;16L", "I;16N", "I"])
def test_sixteen_bit_grey_is_divided_by_65535_into_three_channels(mode: str) -> None:
    values = np.array([[0, 32768, 65535], [1000, 1001, 255]], dtype=np.uint16)
    image = sixteen_bit_image(values, mode)
    assert image.mode == mode
    pixels = pil_to_tensor(image)
    assert pixels.shape == (3, 2, 3)
    assert pixels.dtype == torch.float32
    expected = torch.from_numpy(values.astype(np.float32) / 65535)
    for channel in range(3):
        assert torch.allclose(pixels[channel], expected, atol=1e-7)
    assert pixels[0, 0, 1] == pytest.approx(0.5, abs=1e-4)
    assert pixels[0, 1, 0] != pixels[0, 1, 1], "16-bit precision lost"


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 65535), min_size=1, max_size=64))
def test_any_sixteen_bit_value_maps_to_value_over_65535(values: list[int]) -> None:
    row = np.array([values], dtype=np.uint16)
    pixels = pil_to_tensor(Image.fromarray(row))
    assert pixels[1, 0].tolist() == pytest.approx([value / 65535 for value in values], abs=1e-6)


def test_a_sixteen_bit_png_at_half_grey_stays_half_grey_through_the_transforms(
    tmp_path: Path,
) -> None:
    """The D10 case: 32768 in a 16-bit PNG used to saturate to 1.0 (white)."""
    path = tmp_path / "grey16.png"
    Image.fromarray(np.full((40, 40), 32768, dtype=np.uint16)).save(path)
    with Image.open(path) as image:
        assert image.mode == "I;16"
        assert torch.allclose(pil_to_tensor(image), torch.full((3, 40, 40), 0.5), atol=1e-4)
        torch.manual_seed(0)
        outputs = [Preprocessing((8, 8)).transform()(image), train_transform(8)(image)]
    for output in outputs:
        for channel in range(3):
            expected = (0.5 - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
            assert torch.allclose(output[channel], torch.full((8, 8), expected), atol=1e-3)


@pytest.mark.parametrize("value", [70000, -1])
def test_mode_i_outside_sixteen_bit_is_refused_naming_the_range(value: int) -> None:
    image = Image.fromarray(np.array([[0, value]], dtype=np.int32))
    with pytest.raises(
        DataError, match=rf"mode 'I' .* values from {min(0, value)} to {max(0, value)}.*0 to 65535"
    ):
        pil_to_tensor(image)


def test_float_grey_in_the_unit_interval_is_kept_as_is() -> None:
    values = np.array([[0.0, 0.25, 1.0]], dtype=np.float32)
    pixels = pil_to_tensor(Image.fromarray(values))
    assert pixels.shape == (3, 1, 3)
    for channel in range(3):
        assert pixels[channel, 0].tolist() == [0.0, 0.25, 1.0]


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (2.5, r"mode 'F' .* values from 0 to 2\.5; .*already in \[0, 1\] and does not clip"),
        (-0.5, r"mode 'F' .* values from -0\.5 to 0;"),
        (float("nan"), r"mode 'F' .* NaN or infinite"),
        (float("inf"), r"mode 'F' .* NaN or infinite"),
    ],
)
def test_float_grey_outside_the_unit_interval_is_refused(value: float, match: str) -> None:
    image = Image.fromarray(np.array([[0.0, value]], dtype=np.float32))
    with pytest.raises(DataError, match=match):
        pil_to_tensor(image)


def test_high_precision_modes_are_pillows_greyscale_modes_above_eight_bits() -> None:
    assert {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"} == HIGH_PRECISION_MODES


# --- EXIF orientation (D11) --------------------------------------------------------------------


def oriented_jpeg(path: Path, orientation: int) -> Path:
    """A 40 x 20 JPEG stored red on the left, blue on the right, with an EXIF orientation tag."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    return path


def test_exif_orientation_6_is_turned_upright(tmp_path: Path) -> None:
    """Orientation 6 means "rotate 90 degrees clockwise to view": left (red) ends on top."""
    with Image.open(oriented_jpeg(tmp_path / "o6.jpg", 6)) as image:
        pixels = pil_to_tensor(image)
    assert pixels.shape == (3, 40, 20)
    top, bottom = pixels[:, :18].mean(dim=(1, 2)), pixels[:, 22:].mean(dim=(1, 2))
    assert top[0] > 0.9 > 0.1 > top[2]
    assert bottom[2] > 0.9 > 0.1 > bottom[0]


def test_the_transforms_see_the_upright_image(tmp_path: Path) -> None:
    with Image.open(oriented_jpeg(tmp_path / "o6.jpg", 6)) as image:
        untagged = Image.fromarray(np.asarray(image))  # same pixels, no EXIF
        upright = untagged.transpose(Image.Transpose.ROTATE_270)
        assert torch.equal(
            Preprocessing((16, 16)).transform()(image), Preprocessing((16, 16)).transform()(upright)
        )
        torch.manual_seed(0)
        augmented = train_transform(16)(image)
        torch.manual_seed(0)
        assert torch.equal(augmented, train_transform(16)(upright))


def test_exif_orientation_is_applied_once(tmp_path: Path) -> None:
    with Image.open(oriented_jpeg(tmp_path / "o6.jpg", 6)) as image:
        once = apply_exif_orientation(image)
        assert once.size == (20, 40)
        assert apply_exif_orientation(once) is once
        assert torch.equal(pil_to_tensor(once), pil_to_tensor(image))


@pytest.mark.parametrize("orientation", [None, 1])
def test_an_image_without_a_turning_tag_is_returned_as_is(
    tmp_path: Path, orientation: int | None
) -> None:
    path = tmp_path / "plain.jpg"
    if orientation is None:
        Image.new("RGB", (40, 20)).save(path)
    else:
        oriented_jpeg(path, orientation)
    with Image.open(path) as image:
        assert apply_exif_orientation(image) is image
        assert pil_to_tensor(image).shape == (3, 20, 40)


@settings(max_examples=30, deadline=None)
@given(
    width=sides,
    height=sides,
    image_size=output_sides,
    seed=st.integers(0, 2**31),
    resize_rule=st.sampled_from(["squash", "center_crop"]),
)
def test_eight_bit_photos_are_resized_as_uint8_within_one_step_of_the_float_path(
    width: int, height: int, image_size: int, seed: int, resize_rule: str
) -> None:
    """The uint8 resize (four times faster on a camera photo) stays within one step of 255 of
    converting to float first, after normalisation too; a grey model keeps the float path."""
    image = noise_image(width, height, seed)
    spec = Preprocessing((image_size, image_size), resize=cast("ResizeRule", resize_rule))
    transform = spec.transform()
    fast, exact = transform(image), transform.from_pixels(pil_to_tensor(image))
    assert fast.dtype == exact.dtype == torch.float32
    assert fast.shape == exact.shape
    step = 1.0 / 255 / min(IMAGENET_STD) + 1e-5
    assert float((fast - exact).abs().max()) <= step
    grey = Preprocessing((image_size, image_size), channels=1, mean=(0.5,), std=(0.5,))
    assert torch.equal(grey.transform()(image), grey.transform().from_pixels(pil_to_tensor(image)))


@pytest.mark.parametrize("interpolation", ["bicubic", "nearest-exact"])
def test_other_filters_than_bilinear_take_the_float_path_exactly(interpolation: str) -> None:
    """PyTorch's uint8 bicubic is another filter (7 steps of 255 away): only bilinear is
    resized as uint8."""
    image = noise_image(97, 61, seed=3)
    spec = Preprocessing((24, 24), interpolation=cast("Interpolation", interpolation))
    transform = spec.transform()
    assert torch.equal(transform(image), transform.from_pixels(pil_to_tensor(image)))


def test_a_uint8_resize_differs_from_the_float_one_only_by_rounding() -> None:
    """Not equal (the path is taken) and not further apart than rounding (it is the filter)."""
    image = noise_image(400, 300, seed=1)
    spec = Preprocessing((224, 224), resize="squash", mean=(0, 0, 0), std=(1, 1, 1))
    transform = spec.transform()
    fast, exact = transform(image), transform.from_pixels(pil_to_tensor(image))
    assert not torch.equal(fast, exact)
    assert float(((fast - exact) * 255).abs().max()) <= 1.0 + 1e-4
    assert torch.allclose(fast * 255, (fast * 255).round(), atol=1e-3)  # whole steps of 255


@pytest.mark.parametrize(("height", "width"), [(1, 1), (7, 1), (1, 5)])
def test_outputs_one_pixel_wide_or_high_match_the_float_path(height: int, width: int) -> None:
    """PyTorch's uint8 kernel is 50 steps off (or fails) for a width of one; it is not used."""
    pixels = torch.randint(0, 256, (3, 33, 24), generator=torch.Generator().manual_seed(0))
    eight_bit = pixels.to(torch.uint8)
    fast = resize(eight_bit, (height, width))
    exact = resize(eight_bit.float() / 255, (height, width))
    assert float((fast - exact).abs().max()) * 255 <= 1.0 + 1e-4
