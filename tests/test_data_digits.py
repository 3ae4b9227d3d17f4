"""DigitsDataset: a fixed stratified split of the 8x8 digits, normalised, optionally augmented."""

from __future__ import annotations

import sys
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vitlib.data import DIGITS_MEAN, DIGITS_STD, DigitsDataset
from vitlib.data.digits import DIGITS_TEST_SIZE, DIGITS_TRAIN_SIZE, random_affine

pytest.importorskip("sklearn")

TRAIN_PER_CLASS = [143, 146, 142, 147, 145, 146, 145, 144, 140, 144]
TEST_PER_CLASS = [35, 36, 35, 36, 36, 36, 36, 35, 34, 36]


@pytest.fixture(scope="module")
def train() -> DigitsDataset:
    return DigitsDataset("train")


@pytest.fixture(scope="module")
def test() -> DigitsDataset:
    return DigitsDataset("test")


def test_split_sizes_are_the_documented_ones(train: DigitsDataset, test: DigitsDataset) -> None:
    assert (len(train), len(test)) == (DIGITS_TRAIN_SIZE, DIGITS_TEST_SIZE) == (1442, 355)


def test_split_is_stratified_per_class(train: DigitsDataset, test: DigitsDataset) -> None:
    assert torch.bincount(torch.tensor(train.targets)).tolist() == TRAIN_PER_CLASS
    assert torch.bincount(torch.tensor(test.targets)).tolist() == TEST_PER_CLASS
    for train_count, test_count in zip(TRAIN_PER_CLASS, TEST_PER_CLASS, strict=True):
        assert 0.19 <= test_count / (train_count + test_count) <= 0.21


def test_splits_partition_all_1797_digits() -> None:
    from sklearn.datasets import load_digits

    original = Counter(
        torch.as_tensor(image, dtype=torch.float32).numpy().tobytes()
        for image in load_digits().images
    )
    ours: Counter[bytes] = Counter()
    for split in ("train", "test"):
        pixels = DigitsDataset(split).images * 16
        ours.update(image[0].numpy().tobytes() for image in pixels)
    assert ours == original


def test_split_and_images_are_deterministic(train: DigitsDataset) -> None:
    again = DigitsDataset("train")
    assert again.targets == train.targets
    assert torch.equal(again.images, train.images)
    assert torch.equal(again[7][0], train[7][0])


def test_normalisation_constants_are_the_train_pixel_statistics() -> None:
    pixels = DigitsDataset("train").images
    assert pixels.mean().item() == pytest.approx(DIGITS_MEAN, abs=1e-6)
    assert pixels.std(unbiased=False).item() == pytest.approx(DIGITS_STD, abs=1e-6)


def test_normalised_train_images_have_zero_mean_unit_std(train: DigitsDataset) -> None:
    images = torch.stack([train[index][0] for index in range(len(train))])
    assert images.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert images.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)


def test_source_images_are_8x8_in_the_unit_interval(train: DigitsDataset) -> None:
    assert train.images.shape == (1442, 1, 8, 8)
    assert train.images.min().item() == 0.0
    assert train.images.max().item() == 1.0


def test_upsampling_repeats_each_source_pixel_as_a_block() -> None:
    dataset = DigitsDataset("test", image_size=24)
    for index in (0, 100, 354):
        source = dataset.images[index]
        enlarged = dataset[index][0] * DIGITS_STD + DIGITS_MEAN
        blocks = source.repeat_interleave(3, dim=1).repeat_interleave(3, dim=2)
        assert torch.allclose(enlarged, blocks, atol=1e-6)


@settings(max_examples=8, deadline=None)
@given(image_size=st.integers(min_value=8, max_value=48))
def test_items_are_float32_single_channel_squares(image_size: int) -> None:
    dataset = DigitsDataset("test", image_size=image_size)
    image, label = dataset[0]
    assert image.shape == (1, image_size, image_size)
    assert image.dtype == torch.float32
    assert isinstance(label, int)


def test_classes_and_targets(train: DigitsDataset) -> None:
    assert train.classes == [str(digit) for digit in range(10)]
    assert all(isinstance(target, int) for target in train.targets)
    assert train[0][1] == train.targets[0]


def test_augmentation_differs_between_draws_and_repeats_under_a_seed() -> None:
    dataset = DigitsDataset("train", augment=True)
    torch.manual_seed(0)
    first = dataset[5][0]
    second = dataset[5][0]
    torch.manual_seed(0)
    repeated = dataset[5][0]
    assert not torch.equal(first, second)
    assert torch.equal(first, repeated)
    assert first.shape == (1, 16, 16)
    assert first.dtype == torch.float32


def test_augmentation_is_light(train: DigitsDataset) -> None:
    """A small warp keeps the ink (within the 0.81-1.21 area change) and, on average, the shape."""
    augmented = DigitsDataset("train", augment=True)
    torch.manual_seed(0)
    correlations = []
    for index in range(0, len(train), 17):
        original = train[index][0].flatten() * DIGITS_STD + DIGITS_MEAN
        warped = augmented[index][0].flatten() * DIGITS_STD + DIGITS_MEAN
        assert 0.6 <= (warped.sum() / original.sum()).item() <= 1.4
        assert warped.min() >= -1e-6
        assert warped.max() <= 1 + 1e-6
        correlations.append(torch.corrcoef(torch.stack([original, warped]))[0, 1].item())
    assert sum(correlations) / len(correlations) > 0.5


def test_random_affine_is_reproducible_with_a_generator() -> None:
    image = torch.rand(1, 16, 16)
    first = random_affine(image, torch.Generator().manual_seed(3))
    second = random_affine(image, torch.Generator().manual_seed(3))
    assert torch.equal(first, second)
    assert first.shape == image.shape


def test_augment_is_refused_for_the_test_split() -> None:
    with pytest.raises(ValueError, match="train split only"):
        DigitsDataset("test", augment=True)


def test_unknown_split_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'validation'"):
        DigitsDataset("validation")  # type: ignore[arg-type]


@pytest.mark.parametrize("image_size", [0, 7])
def test_image_size_below_8_is_refused(image_size: int) -> None:
    with pytest.raises(
        ValueError, match=rf"image_size must be an int >= 8, got {image_size}; the digits"
    ):
        DigitsDataset(image_size=image_size)


def test_non_int_image_size_is_refused() -> None:
    with pytest.raises(TypeError, match="float"):
        DigitsDataset(image_size=16.0)  # type: ignore[arg-type]


def test_missing_scikit_learn_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r'pip install "vitlib\[data\]"'):
        DigitsDataset()
