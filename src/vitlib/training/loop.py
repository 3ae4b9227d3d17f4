"""`fit`: the training loop over epochs, with a run directory that resumes exactly."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from vitlib._checks import (
    check_names,
    check_type,
)
from vitlib._runtime import resolve_device
from vitlib.checkpoints.run_folder import HISTORY_FILE
from vitlib.training.config import TrainConfig
from vitlib.training.distributed import barrier, current_context, wrap_model
from vitlib.training.engine import evaluate, train_one_epoch
from vitlib.training.errors import TrainingConfigError
from vitlib.training.fit_checks import check_fit_arguments, check_fit_options
from vitlib.training.fsdp import Parallel, autocast_dtype
from vitlib.training.history import History, ValName
from vitlib.training.optim import build_optimizer, build_scheduler
from vitlib.training.progress import report
from vitlib.training.resume import RunPosition, SavedRun, load_run, restore, save_epoch
from vitlib.training.rng import seed_everything
from vitlib.training.run_dir import prepare_output_dir, write_run_json
from vitlib.training.run_lock import run_lock
from vitlib.training.selection import BestWeights, final_test

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


def fit(
    model: nn.Module,
    train_loader: DataLoader[Any],
    val_loader: DataLoader[Any],
    *,
    test_loader: DataLoader[Any] | None = None,
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
    val_name: ValName = "validation",
    **overrides: Any,
) -> History:
    """Train ``model`` for ``epochs``, select its best epoch on ``val_loader``, test that once.

    The epoch with the best accuracy on ``val_loader`` is the run's best (``best/``,
    `History.best_epoch`); ``test_loader``, if given, is evaluated once, at the end, with its
    weights (`History.test`). Under ``torchrun`` the model is replicated or sharded
    (``parallel``) and rank 0 alone logs and saves; ``output_dir`` is locked for the whole run
    (``.vitlib-run.lock``). docs/training.md says more.

    Args:
        model: The model; moved to ``device``, trained in place (ending as ``last/``).
        train_loader: Training batches ``(images, labels)``.
        val_loader: The batches the best epoch is chosen on: images held out of training.
        test_loader: Evaluated once, at the end, with the best epoch's weights; ``None``: no test.
        epochs: Total epochs of the run (a resumed run continues up to this number).
        config: The recipe; keyword ``overrides`` replace its fields (``fit(..., lr=3e-4)``).
        output_dir: Run directory (`vitlib.checkpoints.run_folder`); ``None`` saves nothing.
        resume: Continue the run in ``output_dir``, to the weights of an uninterrupted run (one
            that has its ``epochs`` or ``max_steps`` is returned as it is, with a warning).
        overwrite: Replace the run in ``output_dir`` (only what a run writes is deleted).
        seed: Seeds Python, NumPy and torch for a new run (a resumed one restores its RNGs).
        device: Where to train; default the model's device.
        progress: Progress bars (tqdm, ``vitlib[progress]``) or log lines.
        on_epoch_end: Called as ``on_epoch_end(epoch, history)`` after each epoch is saved.
        grad_checkpointing: Recompute each block in the backward pass (less memory, the same
            gradients); like ``parallel``, not part of the recipe a resume checks.
        parallel: ``"ddp"`` (a copy per process) or ``"fsdp"`` (shards under torchrun).
        val_name: What ``val_loader`` holds, as the history and logs name it: ``"validation"``,
            or ``"test"`` when there is no held-out split (its accuracy is then optimistic).
        **overrides: ``TrainConfig`` fields.

    Returns:
        The `History` (including the epochs before a resume, and the final test).

    Raises:
        RunExistsError: ``output_dir`` holds something, without ``resume`` or ``overwrite``.
        RunInProgressError: Another run holds ``output_dir``'s lock; the message names it.
        NoRunToResumeError: ``resume=True`` but ``output_dir`` holds no run.
        CheckpointError: A file of the run to resume is missing, damaged or from a newer vitlib.
        SaveError: An epoch could not be saved (a full disk...); the message names the folder and
            the last complete checkpoint, which is intact.
        InputTypeError: An argument of the wrong type (``grad_checkpointing="yes"``).
        NonFiniteLossError: The training loss became NaN or infinite.
        NonFiniteEvalLossError: A validation or test loss was NaN or infinite.
        DataError: A loader yields no batches, or labels that are no class of the model.
        ConfigError: An option is out of range, or ``device`` is one this machine lacks;
            `TrainingConfigError` for settings that contradict each other or the model (FSDP
            without torchrun, no classification head, ``resume=True`` with fewer ``epochs`` or
            ``max_steps`` than the run has, or another ``val_name``).
    """
    recipe = _resolve_config(config, overrides)
    flags = {"resume": resume, "overwrite": overwrite, "progress": progress}
    flags["grad_checkpointing"] = grad_checkpointing
    check_fit_options(output_dir, flags, seed, device, on_epoch_end, val_name)
    batches = check_fit_arguments(model, (train_loader, val_loader, test_loader), epochs, parallel)
    loaders = _Loaders(train_loader, val_loader, test_loader)
    run_dir = _run_dir(output_dir, resume)
    steps = epochs * math.ceil(batches / recipe.accumulation_steps)
    run = _Run(model, loaders, recipe, run_dir, parallel, epochs, steps, val_name)
    with ExitStack() as held:
        if run_dir is not None:  # locked from before it is looked at until the run ends
            held.enter_context(run_lock(run_dir))
            prepare_output_dir(run_dir, resume=resume, overwrite=overwrite)
        target = _place(model, device, grad_checkpointing)
        if not resume:
            seed_everything(seed)
        saved = run.load(run_dir) if run_dir is not None and resume else None
        if saved is not None and saved.complete is not None:
            return run.already_complete(saved, target)
        epoch, position = run.start(target, saved)
        epoch = dataclasses.replace(epoch, progress=progress and current_context().is_main)
        return run.train(epoch, position, on_epoch_end)


@dataclass(frozen=True)
class _Loaders:
    """The loaders of a run: training, selection (validation) and, if any, the final test."""

    train: DataLoader[Any]
    val: DataLoader[Any]
    test: DataLoader[Any] | None


@dataclass(frozen=True)
class _Run:
    """What ``fit`` trains: the model, its data and recipe, where it is saved, for how long
    (``steps``: the optimiser steps of all ``epochs``), what its selection loader holds."""

    model: nn.Module
    loaders: _Loaders
    recipe: TrainConfig
    run_dir: Path | None
    parallel: Parallel
    epochs: int
    steps: int
    val_name: ValName
    best: BestWeights = dataclasses.field(default_factory=BestWeights)

    def load(self, run_dir: Path) -> SavedRun:
        """Check the run to resume in ``run_dir`` and load its last weights (and, for the final
        test, keep those of its best epoch) into the unsharded model."""
        saved = load_run(run_dir, self.model, self.recipe, self.epochs, self.val_name)
        if self.loaders.test is not None:
            self.best.read_run(self.model, run_dir, saved.history.best_epoch())
        return saved

    def start(self, target: torch.device, saved: SavedRun | None) -> tuple[_Epoch, RunPosition]:
        """Wrap the model and build its optimiser; restore ``saved`` (a resumed run) into them."""
        epoch = _Epoch.build(
            self.model, self.loaders, self.recipe, self.parallel, target, self.steps
        )
        if saved is None or self.run_dir is None:
            return epoch, RunPosition(History(val_name=self.val_name))
        restored = restore(
            self.run_dir, saved, self.model, epoch.optimizer, epoch.scheduler, self.loaders.train
        )
        return epoch, restored

    def train(self, epoch: _Epoch, run: RunPosition, on_epoch_end: EpochCallback | None) -> History:
        """Train, evaluate and save the epochs after ``run`` up to ``epochs`` (or max_steps),
        then test the best one."""
        context, max_steps = current_context(), self.recipe.max_steps
        for number in range(run.epoch + 1, self.epochs + 1):
            if max_steps is not None and run.global_step >= max_steps:
                break
            run, improved = epoch.run(number, run)
            if improved and self.loaders.test is not None:
                self.best.keep(self.model, number)
            self._save(run, improved, epoch)
            if context.is_main:
                _report(number, self.epochs, run.history, improved)
            if on_epoch_end is not None:
                on_epoch_end(number, run.history)
        self._test(epoch.device, epoch.amp_dtype, run.history)
        barrier()
        return run.history

    def _save(self, run: RunPosition, improved: bool, epoch: _Epoch) -> None:
        if self.run_dir is not None:
            optimizer, scheduler = epoch.optimizer, epoch.scheduler
            model, recipe, loader = self.model, self.recipe, self.loaders.train
            save_epoch(self.run_dir, run, improved, model, recipe, optimizer, scheduler, loader)

    def _test(self, device: torch.device, amp_dtype: torch.dtype | None, history: History) -> None:
        """Evaluate the test loader once with the best epoch's weights; record it in
        ``history`` (and ``history.json``) and say it."""
        if self.loaders.test is None:
            return
        history.test = final_test(
            self.model,
            self.loaders.test,
            self.best,
            history,
            amp_dtype=amp_dtype,
            device=device,
        )
        if current_context().is_main:
            if self.run_dir is not None:
                write_run_json(self.run_dir, HISTORY_FILE, history.as_dict())
            report(
                "test loss %.4f acc %.4f (best epoch %d of %d, chosen on %s)",
                history.test.loss,
                history.test.acc,
                history.test.epoch,
                len(history),
                self.val_name,
            )

    def already_complete(self, saved: SavedRun, device: torch.device) -> History:
        """Say that the resumed run has nothing left to train; leave the model as a trained run
        leaves it (sharded under ``parallel="fsdp"``), test it if asked, return its history."""
        context = current_context()
        if self.parallel == "fsdp":  # sharded in place, as fit leaves a model it trained
            wrap_model(self.model, context, self.parallel, amp_dtype=self.recipe.amp_dtype)
        if context.is_main:
            logger.warning("%s", saved.complete)
        amp_dtype = autocast_dtype(self.parallel, self.recipe.amp_dtype, device)
        self._test(device, amp_dtype, saved.history)
        barrier()
        return saved.history


@dataclass(frozen=True)
class _Epoch:
    """One epoch of a run: train, evaluate on the selection loader, record."""

    trained: nn.Module
    model: nn.Module
    train_loader: DataLoader[Any]
    val_loader: DataLoader[Any]
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
        loaders: _Loaders,
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
        return cls(
            trained,
            model,
            loaders.train,
            loaders.val,
            optimizer,
            scheduler,
            recipe,
            device,
            amp_dtype,
        )

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
        val = evaluate(
            self.model, self.val_loader, amp_dtype=self.amp_dtype, device=self.device, epoch=epoch
        )
        run.history.append(
            train_loss=train.loss,
            train_acc=train.accuracy,
            val_loss=val.loss,
            val_acc=val.accuracy,
            lr=float(self.optimizer.param_groups[0]["lr"]),
        )
        improved = run.history.best_epoch() == epoch  # ties: the lower validation loss
        best = max(run.best_accuracy, val.accuracy)
        return RunPosition(run.history, epoch, run.global_step + train.steps, best), improved


def _run_dir(output_dir: str | Path | None, resume: bool) -> Path | None:
    if output_dir is None and resume:
        raise TrainingConfigError(
            "resume=True needs the output_dir of the run to continue; pass output_dir=..."
        )
    return None if output_dir is None else Path(output_dir)


def _report(epoch: int, epochs: int, history: History, improved: bool) -> None:
    report(
        "epoch %d/%d  train loss %.4f acc %.4f  %s loss %.4f acc %.4f  lr %.3g%s",
        epoch,
        epochs,
        history.train_loss[-1],
        history.train_acc[-1],
        "val" if history.val_name == "validation" else history.val_name,
        history.val_loss[-1],
        history.val_acc[-1],
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
