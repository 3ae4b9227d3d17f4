"""`fit`: the training loop over epochs, with a run directory that resumes exactly."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable, Iterable, Sized
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from vitlib._checks import check_bool, check_names, check_positive_int, check_type, type_error
from vitlib._runtime import check_device, resolve_device
from vitlib.errors import DataError
from vitlib.training.config import TrainConfig
from vitlib.training.distributed import barrier, current_context, wrap_model
from vitlib.training.engine import check_classification_head, evaluate, train_one_epoch
from vitlib.training.errors import TrainingConfigError
from vitlib.training.fsdp import Parallel, autocast_dtype, check_parallel, encoder_blocks
from vitlib.training.history import History
from vitlib.training.optim import build_optimizer, build_scheduler
from vitlib.training.progress import report
from vitlib.training.resume import RunPosition, SavedRun, load_run, restore, save_epoch
from vitlib.training.rng import check_seed, seed_everything
from vitlib.training.run_dir import prepare_output_dir
from vitlib.training.run_lock import run_lock

logger = logging.getLogger("vitlib.training")

EpochCallback = Callable[[int, History], None]


def _resolve_config(config: TrainConfig | None, overrides: dict[str, Any]) -> TrainConfig:
    check_names(overrides, [f.name for f in dataclasses.fields(TrainConfig)], "fit", "option")
    if config is not None:
        check_type(
            "config",
            config,
            TrainConfig,
            "a vitlib.training.TrainConfig or None (or options as keywords: fit(..., lr=1e-3))",
        )
    base = config if config is not None else TrainConfig()
    return dataclasses.replace(base, **overrides) if overrides else base


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


def _check_test_loader(loader: DataLoader[Any]) -> None:
    """Refuse, before any training, a test loader whose length says it yields no batches."""
    try:
        batches = len(loader)
    except TypeError:  # an IterableDataset without __len__: evaluate() checks after the pass
        return
    if batches == 0:
        samples = len(loader.dataset) if isinstance(loader.dataset, Sized) else "?"
        raise DataError(
            f"the test loader yields 0 batches (batch_size={loader.batch_size}, "
            f"drop_last={loader.drop_last}, samples={samples}); expected at least "
            "one, since every epoch ends with an evaluation. Give it a non-empty data set, "
            "a batch size no larger than the test set, or drop_last=False."
        )


def fit(
    model: nn.Module,
    train_loader: DataLoader[Any],
    test_loader: DataLoader[Any],
    *,
    epochs: int,
    config: TrainConfig | None = None,
    output_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    on_epoch_end: EpochCallback | None = None,
    grad_checkpointing: bool = False,
    parallel: Parallel = "ddp",
    **overrides: Any,
) -> History:
    """Train ``model`` for ``epochs``, evaluating after each one, and return the history.

    Under ``torchrun`` the model is replicated or sharded (``parallel``), metrics are summed over
    ranks and only rank 0 logs and saves; docs/training.md says more. With an ``output_dir``,
    the run holds its lock (``output_dir/.vitlib-run.lock``) from before it looks at the folder
    until it returns: one run at a time in a folder.

    Args:
        model: The model; moved to ``device`` and trained in place.
        train_loader: Training batches ``(images, labels)``.
        test_loader: Evaluation batches.
        epochs: Total epochs of the run (a resumed run continues up to this number).
        config: The recipe; keyword ``overrides`` replace its fields (``fit(..., lr=3e-4)``).
        output_dir: Run directory (`vitlib.checkpoints.run_folder`); ``None`` saves nothing.
        resume: Continue the run in ``output_dir``, to the weights of an uninterrupted run; a
            run that already has its ``epochs`` (or ``max_steps``) is left as it is, with a
            warning, and its history returned.
        overwrite: Replace the run in ``output_dir`` (only what a run writes is deleted).
        seed: Seeds Python, NumPy and torch for a new run (a resumed one restores its RNGs).
        device: Where to train; default the model's device.
        progress: Progress bars (tqdm, ``vitlib[progress]``) or log lines.
        on_epoch_end: Called as ``on_epoch_end(epoch, history)`` after each epoch is saved.
        grad_checkpointing: Recompute each block in the backward pass (less memory, the same
            gradients); like ``parallel``, not part of the recipe a resume checks.
        parallel: ``"ddp"`` (a copy per process) or ``"fsdp"`` (shards under torchrun).
        **overrides: ``TrainConfig`` fields.

    Returns:
        The per-epoch `History` (including the epochs before a resume).

    Raises:
        RunExistsError: ``output_dir`` holds something, without ``resume`` or ``overwrite``.
        RunInProgressError: Another run holds ``output_dir``'s lock; the message names it.
        NoRunToResumeError: ``resume=True`` but ``output_dir`` holds no run.
        CheckpointError: A file of the run to resume is missing, damaged or from a newer vitlib.
        SaveError: An epoch could not be saved (a full disk...); the message names the folder and
            the last complete checkpoint, which is intact.
        InputTypeError: An argument of the wrong type (``grad_checkpointing="yes"``).
        NonFiniteLossError: The training loss became NaN or infinite.
        NonFiniteEvalLossError: The test loss of a batch was NaN or infinite.
        DataError: A loader yields no batches, or labels that are no class of the model.
        ConfigError: An option is out of range, or ``device`` is one this machine lacks;
            `TrainingConfigError` for settings that contradict each other or the model (FSDP
            without torchrun, no classification head, ``resume=True`` with fewer ``epochs`` or
            ``max_steps`` than the run has).
    """
    recipe = _resolve_config(config, overrides)
    _check_options(
        output_dir=output_dir,
        resume=resume,
        overwrite=overwrite,
        seed=seed,
        device=device,
        progress=progress,
        on_epoch_end=on_epoch_end,
        grad_checkpointing=grad_checkpointing,
    )
    batches = _check_arguments(model, train_loader, test_loader, epochs, parallel)
    run_dir = _run_dir(output_dir, resume)
    steps = epochs * math.ceil(batches / recipe.accumulation_steps)
    run = _Run(model, (train_loader, test_loader), recipe, run_dir, parallel, epochs, steps)
    with ExitStack() as held:
        if run_dir is not None:  # locked from before it is looked at until the run ends
            held.enter_context(run_lock(run_dir))
            prepare_output_dir(run_dir, resume=resume, overwrite=overwrite)
        target = _place(model, device, grad_checkpointing)
        if not resume:
            seed_everything(seed)
        saved = load_run(run_dir, model, recipe, epochs) if run_dir is not None and resume else None
        if saved is not None and saved.complete is not None:
            return run.already_complete(saved)
        epoch, position = run.start(target, saved)
        epoch = dataclasses.replace(epoch, progress=progress and current_context().is_main)
        return run.train(epoch, position, on_epoch_end)


@dataclass(frozen=True)
class _Run:
    """What ``fit`` trains: the model, its data and recipe, where it is saved, for how long
    (``steps``: the optimiser steps of all ``epochs``)."""

    model: nn.Module
    loaders: tuple[DataLoader[Any], DataLoader[Any]]
    recipe: TrainConfig
    run_dir: Path | None
    parallel: Parallel
    epochs: int
    steps: int

    def start(self, target: torch.device, saved: SavedRun | None) -> tuple[_Epoch, RunPosition]:
        """Wrap the model and build its optimiser; restore ``saved`` (a resumed run) into them."""
        epoch = _Epoch.build(
            self.model, self.loaders, self.recipe, self.parallel, target, self.steps
        )
        if saved is None or self.run_dir is None:
            return epoch, RunPosition(History())
        restored = restore(
            self.run_dir, saved, self.model, epoch.optimizer, epoch.scheduler, self.loaders[0]
        )
        return epoch, restored

    def train(self, epoch: _Epoch, run: RunPosition, on_epoch_end: EpochCallback | None) -> History:
        """Train, evaluate and save the epochs after ``run`` up to ``epochs`` (or max_steps)."""
        context, max_steps = current_context(), self.recipe.max_steps
        for number in range(run.epoch + 1, self.epochs + 1):
            if max_steps is not None and run.global_step >= max_steps:
                break
            run, improved = epoch.run(number, run)
            self._save(run, improved, epoch)
            if context.is_main:
                _report(number, self.epochs, run.history, improved)
            if on_epoch_end is not None:
                on_epoch_end(number, run.history)
        barrier()
        return run.history

    def _save(self, run: RunPosition, improved: bool, epoch: _Epoch) -> None:
        if self.run_dir is not None:
            optimizer, scheduler = epoch.optimizer, epoch.scheduler
            model, recipe, loader = self.model, self.recipe, self.loaders[0]
            save_epoch(self.run_dir, run, improved, model, recipe, optimizer, scheduler, loader)

    def already_complete(self, saved: SavedRun) -> History:
        """Say that the resumed run has nothing left to train; leave the model as a trained run
        leaves it (sharded under ``parallel="fsdp"``) and return its history."""
        context = current_context()
        if self.parallel == "fsdp":  # sharded in place, as fit leaves a model it trained
            wrap_model(self.model, context, self.parallel, amp_dtype=self.recipe.amp_dtype)
        if context.is_main:
            logger.warning("%s", saved.complete)
        barrier()
        return saved.history


def _check_options(
    *,
    output_dir: object,
    resume: object,
    overwrite: object,
    seed: object,
    device: object,
    progress: object,
    on_epoch_end: object,
    grad_checkpointing: object,
) -> None:
    """Refuse, by the shared checks, a ``fit`` option of the wrong type or out of range."""
    if output_dir is not None:
        check_type("output_dir", output_dir, (str, os.PathLike), "a folder path or None")
    for name, flag in (
        ("resume", resume),
        ("overwrite", overwrite),
        ("progress", progress),
        ("grad_checkpointing", grad_checkpointing),
    ):
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


@dataclass(frozen=True)
class _Epoch:
    """One epoch of a run: train, evaluate, record."""

    trained: nn.Module
    model: nn.Module
    train_loader: DataLoader[Any]
    test_loader: DataLoader[Any]
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    recipe: TrainConfig
    device: torch.device
    amp_dtype: torch.dtype | None
    progress: bool = False

    @classmethod
    def build(
        cls,
        model: nn.Module,
        loaders: tuple[DataLoader[Any], DataLoader[Any]],
        recipe: TrainConfig,
        parallel: Parallel,
        device: torch.device,
        total_steps: int,
    ) -> _Epoch:
        """Wrap (or shard) ``model`` for the process group, then build its optimiser (over the
        sharded parameters, which sharding replaces) and its schedule."""
        trained = wrap_model(model, current_context(), parallel, amp_dtype=recipe.amp_dtype)
        optimizer = build_optimizer(model, recipe)
        scheduler = build_scheduler(
            optimizer,
            schedule=recipe.schedule,
            warmup_steps=recipe.warmup_steps,
            total_steps=min(total_steps, recipe.max_steps or total_steps),
            min_lr_ratio=recipe.min_lr_ratio,
        )
        amp_dtype = autocast_dtype(parallel, recipe.amp_dtype, device)
        return cls(trained, model, *loaders, optimizer, scheduler, recipe, device, amp_dtype)

    def run(self, epoch: int, run: RunPosition) -> tuple[RunPosition, bool]:
        """Train and evaluate epoch ``epoch`` (1-based) after ``run``; return where the run then
        stands and whether this epoch is the best so far."""
        if isinstance(self.train_loader.sampler, DistributedSampler):
            self.train_loader.sampler.set_epoch(epoch - 1)
        max_steps = self.recipe.max_steps
        train = train_one_epoch(
            self.trained,
            self.train_loader,
            self.optimizer,
            scheduler=self.scheduler,
            loss_fn=nn.CrossEntropyLoss(label_smoothing=self.recipe.label_smoothing),
            grad_clip_norm=self.recipe.grad_clip_norm,
            accumulation_steps=self.recipe.accumulation_steps,
            amp_dtype=self.amp_dtype,
            device=self.device,
            step_offset=run.global_step,
            epoch=epoch,
            max_steps=None if max_steps is None else max_steps - run.global_step,
            progress=self.progress,
        )
        test = evaluate(
            self.model, self.test_loader, amp_dtype=self.amp_dtype, device=self.device, epoch=epoch
        )
        run.history.append(
            train_loss=train.loss,
            train_acc=train.accuracy,
            test_loss=test.loss,
            test_acc=test.accuracy,
            lr=float(self.optimizer.param_groups[0]["lr"]),
        )
        improved = run.history.best_epoch() == epoch  # ties: the lower test loss
        best = max(run.best_accuracy, test.accuracy)
        return RunPosition(run.history, epoch, run.global_step + train.steps, best), improved


def _check_arguments(
    model: nn.Module,
    train_loader: DataLoader[Any],
    test_loader: DataLoader[Any],
    epochs: int,
    parallel: Parallel,
) -> int:
    """Refuse, before anything is touched, what ``fit`` cannot run; the batches per epoch."""
    check_type("model", model, nn.Module, "a torch.nn.Module (e.g. a vitlib.ViT)")
    check_type("train_loader", train_loader, DataLoader, "a torch DataLoader of (images, labels)")
    if not isinstance(test_loader, Iterable):
        raise type_error(
            "test_loader", test_loader, "a DataLoader (or another iterable) of (images, labels)"
        )
    check_parallel(parallel)
    if parallel == "fsdp":
        encoder_blocks(model)  # refuse a model it cannot shard before touching output_dir
    check_positive_int("epochs", epochs)
    check_classification_head(model)
    batches = _check_train_loader(train_loader)
    _check_test_loader(test_loader)
    return batches


def _run_dir(output_dir: str | Path | None, resume: bool) -> Path | None:
    if output_dir is None and resume:
        raise TrainingConfigError(
            "resume=True needs the output_dir of the run to continue; pass output_dir=..."
        )
    return None if output_dir is None else Path(output_dir)


def _report(epoch: int, epochs: int, history: History, improved: bool) -> None:
    report(
        "epoch %d/%d  train loss %.4f acc %.4f  test loss %.4f acc %.4f  lr %.3g%s",
        epoch,
        epochs,
        history.train_loss[-1],
        history.train_acc[-1],
        history.test_loss[-1],
        history.test_acc[-1],
        history.lr[-1],
        "  (best)" if improved else "",
    )


def _place(
    model: nn.Module, device: torch.device | str | None, checkpointing: bool
) -> torch.device:
    """Move ``model`` to ``device`` (default: where it is), gradient checkpointing on if asked."""
    if checkpointing:
        _enable_grad_checkpointing(model)
    target = resolve_device(model, device)
    model.to(target)
    return target


def _enable_grad_checkpointing(model: nn.Module) -> None:
    switch = getattr(model, "set_grad_checkpointing", None)
    if not callable(switch):
        raise TrainingConfigError(
            f"grad_checkpointing=True needs a model with set_grad_checkpointing (a vitlib.ViT or a "
            f"timm model), got {type(model).__name__}; wrap its blocks in "
            "torch.utils.checkpoint.checkpoint yourself, or drop the option."
        )
    switch(True)
