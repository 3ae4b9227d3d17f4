"""One epoch of training and one pass of evaluation, with exact per-sample averages (a ragged
last batch weighs as much as its samples, not as a full batch)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from vitlib._checks import check_bool, check_non_negative_int, check_positive_int
from vitlib._runtime import eval_mode, resolve_device
from vitlib.errors import DataError
from vitlib.training.config import check_option
from vitlib.training.distributed import all_reduce_sums, gradient_sync, is_sharded
from vitlib.training.errors import NonFiniteEvalLossError, NonFiniteLossError, TrainingConfigError
from vitlib.training.progress import Progress
from vitlib.vit import ViT

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: Sees each evaluation batch: ``(images, labels, logits)``.
BatchObserver = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]
_ErrorFor = Callable[[float], Exception]
_Item = TypeVar("_Item")


@dataclass(frozen=True)
class EpochResult:
    """Training metrics of one epoch.

    Attributes:
        loss: Per-sample mean training loss.
        accuracy: Fraction of samples classified correctly, in [0, 1].
        samples: Samples seen (over all ranks when the loader is sharded).
        steps: Optimiser steps taken.
    """

    loss: float
    accuracy: float
    samples: int
    steps: int


@dataclass(frozen=True)
class EvalResult:
    """Evaluation metrics: per-sample mean ``loss``, ``accuracy`` in [0, 1], ``samples``."""

    loss: float
    accuracy: float
    samples: int


def autocast(device: torch.device, amp_dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    """``torch.autocast(device.type, amp_dtype)``, or a no-op for ``amp_dtype=None``."""
    check_option("amp_dtype", amp_dtype)
    if amp_dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


@dataclass(frozen=True)
class _Batch:
    """A batch moved to the device, with the smallest and largest label (``None`` if empty)."""

    images: torch.Tensor
    labels: torch.Tensor
    label_range: tuple[int, int] | None


def _where(batch_index: int, epoch: int | None) -> str:
    return f"batch {batch_index}" + ("" if epoch is None else f" of epoch {epoch}")


def _unpack(
    batch: object, device: torch.device, *, role: str, batch_index: int, epoch: int | None
) -> _Batch:
    """Check a loader's ``(images, labels)`` pair and move it to ``device``.

    Labels must be integer class indices; other integer dtypes are converted to int64 (exactly).
    Their range is read here, on the host copy when the loader yields CPU tensors (no device
    sync), and checked against the model's outputs by `_check_labels`.
    """
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise TypeError(
            f"the loader yielded a {type(batch).__name__}; expected (images, labels) pairs, "
            "as a torch DataLoader over (image, label) samples produces."
        )
    images, labels = batch
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise TypeError(
            f"the loader yielded ({type(images).__name__}, {type(labels).__name__}) in "
            f"{_where(batch_index, epoch)}; expected a pair of tensors (images, labels)."
        )
    if labels.dtype != torch.int64:
        if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
            raise DataError(
                f"the {role} loader yielded labels of dtype {labels.dtype} in "
                f"{_where(batch_index, epoch)}; expected int64 class indices in "
                "[0, num_classes), one per image. Build the labels as integers (e.g. "
                "torch.tensor(labels, dtype=torch.long), or labels.long() for whole-number "
                "floats); one-hot or soft labels are not supported."
            )
        labels = labels.long()  # uint8/int16/int32 class indices: exact
    label_range: tuple[int, int] | None = None
    if labels.numel() > 0:
        low, high = torch.stack(torch.aminmax(labels)).tolist()  # one host read, not two
        label_range = (low, high)
    return _Batch(
        images.to(device, non_blocking=True), labels.to(device, non_blocking=True), label_range
    )


def _dataset_classes(loader: object) -> int | None:
    """The number of classes a loader's data set declares (``.classes``), if it says."""
    dataset = getattr(loader, "dataset", None)
    for _ in range(4):  # through Subset(...) and ConcatDataset([...]) wrappers
        classes = getattr(dataset, "classes", None)
        if isinstance(classes, (list, tuple)) and classes:
            return len(classes)
        inner = getattr(dataset, "datasets", None)
        dataset = (
            inner[0] if isinstance(inner, list) and inner else getattr(dataset, "dataset", None)
        )
    return None


def _check_labels(
    logits: torch.Tensor,
    batch: _Batch,
    *,
    loader: object,
    role: str,
    batch_index: int,
    epoch: int | None,
) -> None:
    """Refuse labels that do not index the model's outputs, before the loss is used."""
    where = _where(batch_index, epoch)
    labels = batch.labels
    if logits.dim() < 1 or tuple(labels.shape) != tuple(logits.shape[:-1]):
        raise DataError(
            f"the model returned outputs of shape {tuple(logits.shape)} for labels of shape "
            f"{tuple(labels.shape)} in {where}; expected logits of shape (batch, num_classes) "
            "and one int64 class index per image. End the model in a classification head "
            "(e.g. nn.Linear(features, num_classes))."
        )
    if batch.label_range is None:
        return
    classes = logits.shape[-1]
    low, high = batch.label_range
    if low < 0:
        raise DataError(
            f"the {role} loader yielded label {low} in {where}; expected int64 class indices in "
            f"[0, {classes}). Map the labels to 0..{classes - 1} (negative labels, such as an "
            "ignore_index, are not supported)."
        )
    if high >= classes:
        declared = _dataset_classes(loader)
        needed = max(high + 1, declared or 0)
        said = f" (the data set declares {declared} classes)" if declared else ""
        raise DataError(
            f"the model outputs {classes} classes but the {role} loader yielded label {high} in "
            f"{where}; expected int64 class indices in [0, {classes}). Build the model with "
            f"num_classes={needed}{said}, or remap the labels to 0..{classes - 1}."
        )


def check_classification_head(model: nn.Module) -> None:
    """Refuse a [`vitlib.ViT`][vitlib.ViT] built without a classification head (``num_classes=0``).

    Such a model returns its pooled features; cross-entropy would silently treat them as logits.

    Raises:
        TrainingConfigError: ``model`` (or the module a ``DistributedDataParallel`` wraps) is a
            ViT with ``config.num_classes == 0``.
    """
    inner = model.module if isinstance(model, DistributedDataParallel) else model
    if isinstance(inner, ViT) and inner.config.num_classes == 0:
        width = inner.config.embedding_dim
        raise TrainingConfigError(
            "the model has no classification head (num_classes=0): it outputs "
            f"{width}-d features, which the loss would treat as {width} class logits; expected "
            "a ViT with num_classes >= 1. Build it with num_classes set to the number of classes "
            "in the data (e.g. vitlib.create_model(..., num_classes=10)), or add a head with "
            "nn.Sequential(model, nn.Linear(features, num_classes))."
        )


class _Tally:
    """Running loss and accuracy sums, kept on the device: adding a batch never makes the host
    wait for the device; `read` does, once."""

    def __init__(self, device: torch.device) -> None:
        # float64 as the host's float would be (MPS has no float64).
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self.loss_sum = torch.zeros((), dtype=dtype, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.samples = 0

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch's mean loss (times its size) and its correct predictions."""
        batch_size = labels.shape[0]
        self.loss_sum += loss.detach().to(self.loss_sum.dtype) * batch_size
        self.correct += (logits.detach().argmax(dim=-1) == labels).sum()
        self.samples += batch_size

    def read(self) -> tuple[float, int]:
        """The loss sum and the correct count, as host numbers."""
        loss_sum, correct = torch.stack([self.loss_sum, self.correct.to(self.loss_sum.dtype)])
        return float(loss_sum.item()), round(correct.item())

    def means(self) -> dict[str, float]:
        """Running per-sample loss and accuracy, for the progress display."""
        loss_sum, correct = self.read()
        samples = max(self.samples, 1)
        return {"loss": loss_sum / samples, "acc": correct / samples}


class _FiniteWatch:
    """Stops on a NaN or infinite loss without making the host wait for the device each batch.

    On CUDA a batch's "finite" flag is copied to pinned host memory asynchronously and read at
    the next batch or the end of the pass: the run stops at most one optimiser step after the
    batch, which the error names. Other devices check each loss at once.
    """

    def __init__(self, device: torch.device) -> None:
        self.deferred = device.type == "cuda"
        self.pending: tuple[torch.Tensor, torch.Tensor, Any, _ErrorFor] | None = None

    def watch(self, loss: torch.Tensor, error: _ErrorFor) -> None:
        """Check the previous batch's flag (deferred mode), then ``loss``, at once or later.

        ``error(value)`` builds the exception for this batch, naming where it is.
        """
        self.finish()
        if not self.deferred:
            value = loss.item()
            if not math.isfinite(value):
                raise error(value)
            return
        loss = loss.detach()
        flag = torch.empty((), dtype=torch.bool, pin_memory=True)
        flag.copy_(torch.isfinite(loss), non_blocking=True)
        make_event: Callable[[], Any] = torch.cuda.Event  # untyped in torch
        event = make_event()
        event.record()
        self.pending = (loss, flag, event, error)

    def finish(self) -> None:
        """Check the flag still pending, if any."""
        if self.pending is None:
            return
        loss, flag, event, error = self.pending
        self.pending = None
        event.synchronize()
        if not bool(flag.item()):
            raise error(loss.item())


def _with_last(items: Iterable[_Item]) -> Iterator[tuple[_Item, bool]]:
    """Yield ``(item, is_last)`` pairs, looking one item ahead."""
    iterator = iter(items)
    try:
        current = next(iterator)
    except StopIteration:
        return
    for following in iterator:
        yield current, False
        current = following
    yield current, True


def _safe_len(loader: Iterable[object]) -> int | None:
    if not isinstance(loader, Sized):
        return None
    try:
        return len(loader)
    except TypeError:  # e.g. a DataLoader over an IterableDataset without __len__
        return None


def _sampled_images(loader: Iterable[object]) -> int | None:
    """The images a ``DataLoader`` yields in this process (its sampler's length: this rank's
    share under a ``DistributedSampler``), or ``None`` where it does not tell."""
    if not isinstance(loader, DataLoader):
        return None
    return _safe_len(cast("Iterable[object]", loader.sampler))


def _check_samples(samples: int, role: str) -> None:
    if samples == 0:
        raise DataError(
            f"the {role} loader yielded no samples; expected at least one batch. Check that the "
            "data set is not empty and that drop_last=True is not dropping the only batch."
        )


@dataclass(frozen=True)
class _Pass:
    """What a pass over a loader needs to compute each batch's logits and loss."""

    model: nn.Module
    loader: Iterable[Any]
    loss_fn: LossFn
    amp_dtype: torch.dtype | None
    device: torch.device
    role: str
    epoch: int | None

    def forward(self, batch_index: int, batch: object) -> tuple[_Batch, torch.Tensor, torch.Tensor]:
        """Check and move ``batch``; return it, its logits and its mean loss."""
        index, epoch = batch_index, self.epoch
        unpacked = _unpack(batch, self.device, role=self.role, batch_index=index, epoch=epoch)
        with autocast(self.device, self.amp_dtype):
            logits = self.model(unpacked.images)
            _check_labels(
                logits, unpacked, loader=self.loader, role=self.role, batch_index=index, epoch=epoch
            )
            loss = self.loss_fn(logits, unpacked.labels)
        return unpacked, logits, loss

    def totals(self, tally: _Tally) -> tuple[float, float, int]:
        """Per-sample mean loss, accuracy and samples (summed over the ranks of a sharded
        loader); refuses a pass that saw no sample."""
        loss_sum, correct = tally.read()
        samples = tally.samples
        if is_sharded(self.loader):
            loss_sum, correct_sum, samples_sum = all_reduce_sums([loss_sum, correct, samples])
            correct, samples = round(correct_sum), round(samples_sum)
        _check_samples(samples, self.role)
        return loss_sum / samples, correct / samples, samples


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader[Any] | Iterable[Any],
    optimizer: torch.optim.Optimizer,
    *,
    scheduler: LRScheduler | None = None,
    loss_fn: LossFn | None = None,
    grad_clip_norm: float | None = 1.0,
    accumulation_steps: int = 1,
    amp_dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    step_offset: int = 0,
    epoch: int = 1,
    max_steps: int | None = None,
    progress: bool = True,
) -> EpochResult:
    """Train ``model`` for one pass over ``loader``.

    Gradients are summed per sample and divided by the samples of each optimiser step, so
    ``accumulation_steps=k`` equals one batch k times larger; docs/training.md says more.

    Args:
        model: The model (may be wrapped in ``DistributedDataParallel`` or sharded by
            ``fully_shard``); put in train mode.
        loader: Yields ``(images, labels)`` with class-index labels.
        optimizer: Optimiser over the model's parameters.
        scheduler: A per-step learning-rate scheduler, stepped after every optimiser step.
        loss_fn: Mean-reduced loss ``(logits, labels) -> scalar``; default cross-entropy.
        grad_clip_norm: Global gradient-norm limit; ``None`` disables clipping.
        accumulation_steps: Micro-batches per optimiser step (>= 1).
        amp_dtype: ``torch.bfloat16`` for autocast, ``None`` for full precision.
        device: Where to move the batches; default the model's device.
        step_offset: Optimiser steps taken before this epoch (named in errors).
        epoch: 1-based epoch number, for progress and errors.
        max_steps: Stop after this many optimiser steps in this epoch.
        progress: Show a progress bar (tqdm) or log lines.

    Returns:
        Per-sample mean loss and accuracy, samples seen and optimiser steps taken; summed over all
        ranks when the loader uses a ``DistributedSampler``.

    Raises:
        NonFiniteLossError: The loss became NaN or infinite.
        DataError: The labels are not int64 class indices in ``[0, num_classes)`` of the model's
            outputs (checked before each batch's backward pass, so before its optimiser step).
        TrainingConfigError: ``model`` is a [`vitlib.ViT`][vitlib.ViT] without a head
            (``num_classes=0``), or an option is out of range.
    """
    check_classification_head(model)
    check_option("accumulation_steps", accumulation_steps)
    check_option("grad_clip_norm", grad_clip_norm)
    check_option("amp_dtype", amp_dtype)
    check_option("max_steps", max_steps)
    check_non_negative_int("step_offset", step_offset)
    check_positive_int("epoch", epoch)
    check_bool("progress", progress)
    device = resolve_device(model, device)
    run = _Pass(
        model, loader, loss_fn or nn.CrossEntropyLoss(), amp_dtype, device, "training", epoch
    )
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    model.train()
    optimizer.zero_grad(set_to_none=True)
    tally, watch, steps = _Tally(device), _FiniteWatch(device), 0
    group_samples, group_batches = 0, 0
    with Progress(_safe_len(loader), f"epoch {epoch} train", enabled=progress) as bar:
        for batch_index, (batch, is_last) in enumerate(_with_last(loader)):
            steps_now = group_batches + 1 == accumulation_steps or is_last
            with gradient_sync(model, steps_now):
                unpacked, logits, batch_loss = run.forward(batch_index, batch)
                error = functools.partial(
                    NonFiniteLossError,
                    epoch=epoch,
                    global_step=step_offset + steps,
                    batch_index=batch_index,
                    lr=float(optimizer.param_groups[0]["lr"]),
                )
                watch.watch(batch_loss, error)
                torch.autograd.backward(batch_loss * len(unpacked.labels))
            tally.add(batch_loss, logits, unpacked.labels)
            group_samples += len(unpacked.labels)
            group_batches += 1
            bar.update(tally.means)
            if not steps_now:
                continue
            _step(parameters, group_samples, grad_clip_norm, optimizer, scheduler)
            steps += 1
            group_samples, group_batches = 0, 0
            if max_steps is not None and steps >= max_steps:
                break
        watch.finish()
    loss, accuracy, samples = run.totals(tally)
    return EpochResult(loss=loss, accuracy=accuracy, samples=samples, steps=steps)


def _step(
    parameters: list[torch.Tensor],
    samples: int,
    grad_clip_norm: float | None,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler | None,
) -> None:
    """One optimiser step on gradients summed over ``samples``: average, clip, step."""
    for parameter in parameters:
        if parameter.grad is not None:
            parameter.grad.div_(samples)
    if grad_clip_norm is not None:
        nn.utils.clip_grad_norm_(parameters, grad_clip_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader[Any] | Iterable[Any],
    *,
    loss_fn: LossFn | None = None,
    amp_dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    epoch: int | None = None,
    on_batch: BatchObserver | None = None,
) -> EvalResult:
    """Evaluate ``model`` on ``loader`` in eval mode, without gradients.

    The one evaluation loop: ``fit`` runs it after every epoch, and
    [`evaluate_model`][vitlib.evaluate_model] builds its report on it (through ``on_batch``).

    Args:
        model: The model; in eval mode for the pass, then back in the mode it was in.
        loader: Yields ``(images, labels)``.
        loss_fn: Mean-reduced loss; default plain cross-entropy.
        amp_dtype: ``torch.bfloat16`` for autocast, ``None`` for full precision.
        device: Where to move the batches; default the model's device.
        progress: Show a progress bar (tqdm) or log lines; it counts images (images/s and the
            time left) where the loader's sampler tells how many, else batches.
        epoch: The 1-based epoch being evaluated, named in errors (``fit`` passes it).
        on_batch: Called as ``on_batch(images, labels, logits)`` for each batch, once its
            labels and loss are checked (tensors on the device).

    Returns:
        Per-sample mean loss and accuracy over the whole loader (summed over ranks if it is sharded
        by a ``DistributedSampler``; an unsharded loader is evaluated whole on every rank).

    Raises:
        NonFiniteEvalLossError: The loss of a batch was NaN or infinite (e.g. a NaN image).
        DataError: The labels are not int64 class indices in ``[0, num_classes)``, or the loader
            yielded no samples.
        TrainingConfigError: ``model`` is a [`vitlib.ViT`][vitlib.ViT] without a head
            (``num_classes=0``).
    """
    check_classification_head(model)
    check_option("amp_dtype", amp_dtype)
    check_bool("progress", progress)
    if epoch is not None:
        check_positive_int("epoch", epoch)
    device = resolve_device(model, device)
    run = _Pass(
        model, loader, loss_fn or nn.CrossEntropyLoss(), amp_dtype, device, "evaluation", epoch
    )
    tally, watch = _Tally(device), _FiniteWatch(device)
    images = _sampled_images(loader)
    total, unit = (images, "img") if images is not None else (_safe_len(loader), "batch")
    bar = Progress(total, "evaluate", enabled=progress, unit=unit)
    with bar, eval_mode(model):
        for batch_index, batch in enumerate(loader):
            unpacked, logits, batch_loss = run.forward(batch_index, batch)
            watch.watch(
                batch_loss,
                functools.partial(NonFiniteEvalLossError, batch_index=batch_index, epoch=epoch),
            )
            tally.add(batch_loss, logits, unpacked.labels)
            if on_batch is not None:
                on_batch(unpacked.images, unpacked.labels, logits)
            bar.update(tally.means, count=len(unpacked.labels) if images is not None else 1)
        watch.finish()
    loss, accuracy, samples = run.totals(tally)
    return EvalResult(loss=loss, accuracy=accuracy, samples=samples)
