"""Train and evaluation DataLoaders (seeded shuffling, optional distributed sharding of the
train set) and the stratified validation split held out of a training set."""

from __future__ import annotations

import os
from collections.abc import Sequence, Sized
from typing import Final, TypeVar, cast

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from vitlib._checks import check_int, check_number, check_positive_int, check_sequence, check_type
from vitlib.errors import DataError

__all__ = [
    "decode_workers",
    "eval_loader",
    "make_dataloaders",
    "max_num_workers",
    "stratified_split",
]

T = TypeVar("T")


def make_dataloaders(
    train_ds: Dataset[T],
    test_ds: Dataset[T],
    batch_size: int,
    *,
    num_workers: int = 0,
    seed: int = 0,
    distributed: bool = False,
    drop_last: bool = False,
    num_replicas: int | None = None,
    rank: int | None = None,
) -> tuple[DataLoader[T], DataLoader[T]]:
    """Build the train and test loaders.

    The train loader shuffles with a ``torch.Generator`` seeded with ``seed`` (the same epoch
    orders and augmentations on every run); the test loader keeps the data set's order. With
    ``distributed=True`` the train set is sharded by ``DistributedSampler(shuffle=True,
    seed=seed)`` (call ``sampler.set_epoch(epoch)`` every epoch) and every rank evaluates the whole
    test set; docs/data.md says more.

    Args:
        train_ds: Training dataset; must define ``__len__``.
        test_ds: Test dataset; must define ``__len__``.
        batch_size: Samples per batch (per process when distributed), from 1 to the number of
            training samples this process sees.
        num_workers: Loader worker processes; 0 loads in the main process.
        seed: Seed of the train shuffle (and of the distributed sampler).
        distributed: Shard the train set across processes.
        drop_last: Drop the last incomplete train batch.
        num_replicas: Number of processes, only with ``distributed=True``.
        rank: This process's rank, only with ``distributed=True``.

    Returns:
        ``(train_loader, test_loader)``.

    Raises:
        InputTypeError: A dataset has no ``__len__``, or an argument has the wrong type.
        ConfigError: ``batch_size`` or ``num_workers`` out of range.
        DataError: An empty dataset, a ``batch_size`` above the training samples,
            ``num_replicas``/``rank`` without ``distributed=True``, or ``distributed=True`` with
            neither a process group nor both.
    """
    check_positive_int("batch_size", batch_size)
    check_int(
        "num_workers",
        num_workers,
        minimum=0,
        maximum=max_num_workers(),
        fix="each worker is a process: 0 loads in this one, a few per CPU is plenty",
    )
    train_size = _dataset_size(train_ds, "train_ds")
    _dataset_size(test_ds, "test_ds")
    generator = torch.Generator().manual_seed(seed)
    sampler = _train_sampler(train_ds, distributed, seed, num_replicas, rank)
    samples_here = train_size if sampler is None else len(sampler)
    if not 1 <= batch_size <= samples_here:
        where = (
            "the training set" if sampler is None else "this process's shard of the training set"
        )
        raise DataError(
            f"batch_size must be between 1 and the {samples_here} samples of {where}, got "
            f"{batch_size}; use 1 <= batch_size <= {samples_here}"
        )
    pin_memory = torch.cuda.is_available()
    train_loader = DataLoader(
        train_ds,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        generator=generator,
        persistent_workers=num_workers > 0,
    )
    return train_loader, eval_loader(test_ds, batch_size, num_workers=num_workers)


def eval_loader(dataset: Dataset[T], batch_size: int, *, num_workers: int = 0) -> DataLoader[T]:
    """The loader of an evaluation set (validation or test): in the data set's order, unsharded
    (under ``torchrun`` every rank evaluates all of it), the test loader of `make_dataloaders`.

    Raises:
        InputTypeError: ``dataset`` has no ``__len__``, or an argument has the wrong type.
        ConfigError: ``batch_size`` or ``num_workers`` out of range.
        DataError: ``dataset`` is empty.
    """
    check_positive_int("batch_size", batch_size)
    check_int("num_workers", num_workers, minimum=0, maximum=max_num_workers())
    _dataset_size(dataset, "dataset")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )


def stratified_split(
    targets: Sequence[int], fraction: float, *, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Hold ``fraction`` of each class out of a training set, for validation.

    Each class of ``n`` samples gives ``round(n * fraction)`` of them, at least one when it has
    two or more and never all of them (a class of one sample stays whole in training). Which
    samples go is drawn by a ``torch.Generator`` seeded with ``seed``, class by class: the same
    ``targets``, ``fraction`` and ``seed`` give the same split on every machine.

    Args:
        targets: The class index of each sample (``dataset.targets``).
        fraction: The share of each class held out, in (0, 1); 0.1 holds out 10%.
        seed: Seed of the draw.

    Returns:
        ``(kept, held_out)``: sorted sample indices for training and for validation.

    Raises:
        InputTypeError: ``targets`` is not a sequence of ints, or ``seed`` not an int.
        ConfigError: ``fraction`` is not in (0, 1), or ``seed`` is negative.
        DataError: No class has two samples, so nothing can be held out.

    Examples:
        >>> stratified_split([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 0.25, seed=0)[1]
        [0, 4, 12]
    """
    check_number(
        "fraction", fraction, low=0.0, high=1.0, low_open=True, high_open=True,
        fix="0.1 holds out 10% of each class",
    )  # fmt: skip
    check_int("seed", seed, minimum=0)
    by_class: dict[int, list[int]] = {}
    for index, target in enumerate(check_sequence("targets", targets, "a sequence of ints")):
        by_class.setdefault(check_int("each target", target), []).append(index)
    generator = torch.Generator().manual_seed(seed)
    held_out: list[int] = []
    for label in sorted(by_class):
        members = by_class[label]
        count = min(max(1, round(len(members) * fraction)), len(members) - 1)
        order = torch.randperm(len(members), generator=generator).tolist()
        held_out += [members[position] for position in order[:count]]
    if not held_out:
        raise DataError(
            f"cannot hold out a validation split of {len(targets)} sample(s): no class has two "
            "samples (one must stay for training). Add images, give a separate validation set, "
            "or train without one (val_split=0, --val-split 0)."
        )
    chosen = set(held_out)
    return [i for i in range(len(targets)) if i not in chosen], sorted(held_out)


def max_num_workers() -> int:
    """The most loader workers accepted: 4 per CPU this process may use, and at least 32."""
    return max(32, 4 * _usable_cpus())


#: The most decoding workers `decode_workers` chooses by itself.
MAX_AUTO_DECODE_WORKERS: Final = 4


def decode_workers(requested: int | None, images: int, batch_size: int) -> int:
    """How many processes decode image files for inference (``predict``, ``evaluate``).

    ``requested`` is kept when given (0: decode in this process). ``None`` chooses: none when
    the ``images`` fit in one batch (nothing to overlap with the model, and starting a worker
    costs more), else one per CPU this process may use, up to `MAX_AUTO_DECODE_WORKERS`.
    Measured with ViT-S/16 on 256 camera photos (2000x1500 JPEGs) and 2 CPUs: 0 workers 20.0
    photos/s, 1 21.6, 2 24.3, 3 23.8 (the model alone: 30.5); benchmarks/photos.py.

    Raises:
        InputTypeError: ``requested`` is not an int or None.
        ConfigError: ``requested`` is negative or over `max_num_workers`.
    """
    if requested is not None:
        return check_int("num_workers", requested, minimum=0, maximum=max_num_workers())
    if images <= batch_size:
        return 0
    return min(MAX_AUTO_DECODE_WORKERS, _usable_cpus())


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _dataset_size(dataset: object, name: str) -> int:
    check_type(name, dataset, Sized, "a map-style dataset (one that defines __len__)")
    size = len(cast("Sized", dataset))
    if size == 0:
        raise DataError(f"{name} is empty (0 samples); check the folder or split it was built from")
    return size


def _train_sampler(
    train_ds: Dataset[T],
    distributed: bool,
    seed: int,
    num_replicas: int | None,
    rank: int | None,
) -> DistributedSampler[T] | None:
    if not distributed:
        if num_replicas is not None or rank is not None:
            raise DataError(
                f"num_replicas={num_replicas} and rank={rank} only apply with distributed=True; "
                "pass distributed=True or leave them None"
            )
        return None
    if (num_replicas is None) != (rank is None):
        raise DataError(
            "pass both num_replicas and rank or neither, "
            f"got num_replicas={num_replicas}, rank={rank}"
        )
    if num_replicas is None and not (
        torch.distributed.is_available() and torch.distributed.is_initialized()
    ):
        raise DataError(
            "distributed=True needs an initialised process group "
            "(torch.distributed.init_process_group) or explicit num_replicas and rank"
        )
    return DistributedSampler(
        train_ds, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed
    )
