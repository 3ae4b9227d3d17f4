"""The checks [`fit`][vitlib.training.fit] runs on its arguments before it touches anything."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sized
from typing import Any

from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from vitlib._checks import check_bool, check_choice, check_positive_int, check_type, type_error
from vitlib._runtime import check_device
from vitlib.errors import DataError
from vitlib.training.engine import check_classification_head
from vitlib.training.fsdp import Parallel, check_parallel, encoder_blocks
from vitlib.training.history import VAL_NAMES
from vitlib.training.rng import check_seed

__all__ = ["check_fit_arguments", "check_fit_options"]


def _check_train_loader(loader: DataLoader[Any]) -> int:
    """Return the batches per epoch, refusing a loader that yields none."""
    batches = len(loader)
    if batches == 0:
        samples = len(loader.sampler) if isinstance(loader.sampler, (DistributedSampler,)) else "?"
        raise DataError(
            f"the training loader yields 0 batches per epoch (batch_size={loader.batch_size}, "
            f"drop_last={loader.drop_last}, samples={samples}); expected at least one. Use a "
            "batch size no larger than the training set or drop_last=False."
        )
    return batches


def _check_eval_loader(name: str, loader: object, when: str) -> None:
    """Refuse, before any training, an evaluation loader that is no iterable, or whose length
    says it yields no batches (``when``: when it is evaluated)."""
    if not isinstance(loader, Iterable):
        raise type_error(name, loader, "a DataLoader (or another iterable) of (images, labels)")
    try:
        batches = len(loader) if isinstance(loader, Sized) else None
    except TypeError:  # a DataLoader over an IterableDataset: evaluate() checks after the pass
        return
    if batches == 0:  # None: no length to tell
        dataset = getattr(loader, "dataset", None)
        samples = len(dataset) if isinstance(dataset, Sized) else "?"
        raise DataError(
            f"the {name} yields 0 batches (batch_size={getattr(loader, 'batch_size', '?')}, "
            f"drop_last={getattr(loader, 'drop_last', '?')}, samples={samples}); expected at "
            f"least one, since {when}. Give it a non-empty data set, a batch size no larger "
            "than its data set, or drop_last=False."
        )


def check_fit_options(
    output_dir: object,
    flags: Mapping[str, object],
    seed: object,
    device: object,
    on_epoch_end: object,
    val_name: object,
) -> None:
    """Refuse, by the shared checks, a ``fit`` option of the wrong type or out of range
    (``flags``: the on/off options by name)."""
    if output_dir is not None:
        check_type("output_dir", output_dir, (str, os.PathLike), "a folder path or None")
    for name, flag in flags.items():
        check_bool(name, flag)
    check_seed(seed)
    if device is not None:
        check_device(device)
    if on_epoch_end is not None and not callable(on_epoch_end):
        raise type_error(
            "on_epoch_end",
            on_epoch_end,
            "a function called as on_epoch_end(epoch, history), or None",
        )
    check_choice("val_name", val_name, VAL_NAMES)


def check_fit_arguments(
    model: nn.Module,
    loaders: tuple[DataLoader[Any], object, object],
    epochs: int,
    parallel: Parallel,
) -> int:
    """Refuse, before anything is touched, what ``fit`` cannot run (``loaders``: training,
    validation, test or ``None``); return the batches per epoch."""
    train, val, test = loaders
    check_type("model", model, nn.Module, "a torch.nn.Module (e.g. a vitlib.ViT)")
    check_type("train_loader", train, DataLoader, "a torch DataLoader of (images, labels)")
    check_parallel(parallel)
    if parallel == "fsdp":
        encoder_blocks(model)  # refuse a model it cannot shard before touching output_dir
    check_positive_int("epochs", epochs)
    check_classification_head(model)
    batches = _check_train_loader(train)
    _check_eval_loader("val_loader", val, "every epoch ends with an evaluation on it")
    if test is not None:
        _check_eval_loader("test_loader", test, "the run ends with an evaluation on it")
    return batches
