"""make_dataloaders: seeded train shuffling, an ordered test loader, distributed train sharding."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor
from torch.utils.data import (
    DataLoader,
    DistributedSampler,
    IterableDataset,
    SequentialSampler,
    Subset,
    TensorDataset,
)

from vitlib.data import DigitsDataset, make_dataloaders
from vitlib.data.loaders import decode_workers, eval_loader, stratified_split
from vitlib.errors import ConfigError, DataError, InputTypeError

Batch = tuple[Tensor, ...]


def indexed(size: int) -> TensorDataset:
    """A dataset whose samples are their own indices."""
    return TensorDataset(torch.arange(size))


def epoch_order(loader: DataLoader[Batch]) -> list[int]:
    return [int(index) for (batch,) in loader for index in batch]


def test_train_is_shuffled_reproducibly_by_seed() -> None:
    first, _ = make_dataloaders(indexed(50), indexed(10), 8, seed=3)
    again, _ = make_dataloaders(indexed(50), indexed(10), 8, seed=3)
    other, _ = make_dataloaders(indexed(50), indexed(10), 8, seed=4)
    orders = [epoch_order(first), epoch_order(first)]
    assert sorted(orders[0]) == list(range(50))
    assert orders[0] != list(range(50))
    assert orders[0] != orders[1]
    assert [epoch_order(again), epoch_order(again)] == orders
    assert epoch_order(other) != orders[0]


def test_test_loader_keeps_order_and_every_sample() -> None:
    _, test = make_dataloaders(indexed(50), indexed(13), 5, drop_last=True)
    assert epoch_order(test) == list(range(13))
    assert isinstance(test.sampler, SequentialSampler)


def test_drop_last_applies_to_the_train_loader() -> None:
    train, _ = make_dataloaders(indexed(50), indexed(10), 8, drop_last=True)
    assert len(train) == 6
    assert len(epoch_order(train)) == 48


def test_digits_batches_have_the_model_input_shape() -> None:
    pytest.importorskip("sklearn")
    train, test = make_dataloaders(DigitsDataset("train"), DigitsDataset("test"), 64)
    images, labels = next(iter(train))
    assert images.shape == (64, 1, 16, 16)
    assert labels.dtype == torch.int64
    assert sum(len(labels) for _, labels in test) == 355


def test_worker_augmentations_repeat_for_the_same_seed_and_only_for_it() -> None:
    """Workers seed torch from the loader's seeded generator, so augmented batches repeat; each
    worker, each sample and each seed draws its own augmentation."""
    pytest.importorskip("sklearn")
    clean = DigitsDataset("train")[0][0]
    # one image, 64 times: what changes from sample to sample is the augmentation alone
    same_image = Subset(DigitsDataset("train", augment=True), [0] * 64)

    def epoch(seed: int) -> Tensor:  # two batches of 32, one from each worker
        train, _ = make_dataloaders(same_image, indexed(4), 32, num_workers=2, seed=seed)
        return torch.cat([images for images, _ in train])

    first = epoch(1)
    assert torch.equal(epoch(1), first)
    other_seed = epoch(2)
    assert all(not torch.equal(a, b) for a, b in zip(first, other_seed, strict=True))
    assert all(not torch.equal(image, clean) for image in first)  # augmented in the workers
    assert len({image.numpy().tobytes() for image in first}) == 64  # both workers, every sample


def test_distributed_shards_the_train_set_and_not_the_test_set() -> None:
    shards = []
    for rank in range(2):
        train, test = make_dataloaders(
            indexed(11), indexed(7), 2, seed=5, distributed=True, num_replicas=2, rank=rank
        )
        assert isinstance(train.sampler, DistributedSampler)
        assert train.sampler.shuffle
        assert train.sampler.seed == 5
        assert (train.sampler.num_replicas, train.sampler.rank) == (2, rank)
        assert epoch_order(test) == list(range(7))
        shards.append(epoch_order(train))
    assert [len(shard) for shard in shards] == [6, 6]
    assert set(shards[0]) | set(shards[1]) == set(range(11))


def test_distributed_order_changes_with_set_epoch() -> None:
    train, _ = make_dataloaders(
        indexed(40), indexed(4), 4, distributed=True, num_replicas=2, rank=0
    )
    assert isinstance(train.sampler, DistributedSampler)
    first = epoch_order(train)
    assert epoch_order(train) == first
    train.sampler.set_epoch(1)
    assert epoch_order(train) != first


def test_distributed_batch_size_is_checked_against_the_shard() -> None:
    with pytest.raises(ValueError, match=r"20 samples of this process's shard.*batch_size <= 20"):
        make_dataloaders(indexed(40), indexed(4), 21, distributed=True, num_replicas=2, rank=1)


def test_distributed_without_a_process_group_or_ranks_is_refused() -> None:
    with pytest.raises(ValueError, match=r"init_process_group\) or explicit num_replicas and rank"):
        make_dataloaders(indexed(8), indexed(4), 2, distributed=True)


def test_ranks_without_distributed_are_refused() -> None:
    with pytest.raises(ValueError, match=r"only apply with distributed=True"):
        make_dataloaders(indexed(8), indexed(4), 2, num_replicas=2, rank=0)


def test_half_of_num_replicas_and_rank_is_refused() -> None:
    with pytest.raises(ValueError, match=r"pass both num_replicas and rank or neither"):
        make_dataloaders(indexed(8), indexed(4), 2, distributed=True, num_replicas=2)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_batch_size_below_one_is_refused_as_everywhere(batch_size: int) -> None:
    with pytest.raises(ValueError, match=rf"^batch_size must be an int >= 1, got {batch_size}\.$"):
        make_dataloaders(indexed(50), indexed(10), batch_size)


def test_batch_size_above_the_training_samples_is_refused() -> None:
    with pytest.raises(ValueError, match=r"50 samples of the training set, got 51.*<= 50"):
        make_dataloaders(indexed(50), indexed(10), 51)


def test_batch_size_equal_to_train_size_is_accepted() -> None:
    train, _ = make_dataloaders(indexed(50), indexed(10), 50)
    assert len(train) == 1


@pytest.mark.parametrize("batch_size", [True, 8.0])
def test_non_int_batch_size_is_refused(batch_size: object) -> None:
    with pytest.raises(TypeError, match="batch_size must be an int"):
        make_dataloaders(indexed(50), indexed(10), batch_size)  # type: ignore[arg-type]


@pytest.mark.parametrize("which", ["train_ds", "test_ds"])
def test_empty_datasets_are_refused(which: str) -> None:
    datasets = {"train_ds": indexed(8), "test_ds": indexed(8), which: indexed(0)}
    with pytest.raises(ValueError, match=rf"{which} is empty \(0 samples\)"):
        make_dataloaders(datasets["train_ds"], datasets["test_ds"], 2)


class Stream(IterableDataset[Batch]):
    def __iter__(self) -> Iterator[Batch]:
        yield (torch.zeros(1),)


def test_datasets_without_len_are_refused() -> None:
    with pytest.raises(
        TypeError,
        match=r"train_ds must be a map-style dataset .* got .*\(Stream\)",
    ):
        make_dataloaders(Stream(), indexed(4), 2)


def test_negative_num_workers_is_refused() -> None:
    with pytest.raises(ValueError, match=r"num_workers must be an int >= 0 and <= \d+, got -1"):
        make_dataloaders(indexed(8), indexed(4), 2, num_workers=-1)


@settings(deadline=None, max_examples=60)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=6),
    fraction=st.floats(min_value=0.01, max_value=0.99),
    seed=st.integers(min_value=0, max_value=2**31),
)
def test_a_stratified_split_holds_out_the_share_of_every_class_it_can(
    sizes: list[int], fraction: float, seed: int
) -> None:
    """Each class of n >= 2 gives round(n * fraction) samples, at least 1 and at most n - 1; a
    class of 1 stays whole; the two parts cover the samples once; the same seed, the same split."""
    targets = [label for label, size in enumerate(sizes) for _ in range(size)][::-1]
    if all(size == 1 for size in sizes):
        with pytest.raises(DataError, match="no class has two samples"):
            stratified_split(targets, fraction, seed=seed)
        return
    kept, held_out = stratified_split(targets, fraction, seed=seed)
    assert sorted(kept + held_out) == list(range(len(targets)))
    assert kept == sorted(kept)
    assert held_out == sorted(held_out)
    for label, size in enumerate(sizes):
        expected = 0 if size == 1 else min(max(1, round(size * fraction)), size - 1)
        assert sum(targets[index] == label for index in held_out) == expected
    assert stratified_split(targets, fraction, seed=seed) == (kept, held_out)


def test_another_seed_holds_out_other_samples() -> None:
    targets = [index % 4 for index in range(400)]
    assert stratified_split(targets, 0.1, seed=0) != stratified_split(targets, 0.1, seed=1)


@pytest.mark.parametrize(
    ("fraction", "error"), [(0.0, ConfigError), (1.0, ConfigError), ("0.1", InputTypeError)]
)
def test_a_split_fraction_outside_0_1_is_refused(fraction: object, error: type) -> None:
    with pytest.raises(error, match=r"fraction must be a number in \(0, 1\)"):
        stratified_split([0, 0, 1, 1], fraction, seed=0)  # type: ignore[arg-type]


def test_an_eval_loader_keeps_the_order_and_refuses_an_empty_set() -> None:
    loader = eval_loader(indexed(10), 4)
    assert epoch_order(loader) == list(range(10))
    assert isinstance(loader.sampler, SequentialSampler)
    with pytest.raises(DataError, match="dataset is empty"):
        eval_loader(indexed(0), 4)


@pytest.mark.parametrize(
    ("cpus", "images", "expected"),
    [(2, 33, 2), (2, 32, 0), (1, 100, 1), (16, 100, 4), (3, 1000, 3), (8, 0, 0)],
)
def test_decode_workers_are_one_per_cpu_up_to_4_beyond_one_batch(
    monkeypatch: pytest.MonkeyPatch, cpus: int, images: int, expected: int
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert decode_workers(None, images, 32) == expected


def test_decode_workers_asked_for_are_kept_and_checked() -> None:
    assert decode_workers(0, 1000, 32) == 0
    assert decode_workers(3, 5, 32) == 3
    with pytest.raises(ConfigError, match="num_workers must be an int >= 0"):
        decode_workers(-1, 5, 32)
    with pytest.raises(InputTypeError, match="num_workers must be an int"):
        decode_workers("2", 5, 32)  # type: ignore[arg-type]
