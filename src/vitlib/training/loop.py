"""`fit`: the training loop over epochs, with a run directory that resumes exactly."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from vitlib._checks import did_you_mean
from vitlib._runtime import resolve_device
from vitlib._version import __version__
from vitlib.errors import CheckpointError, DataError
from vitlib.training.config import TrainConfig
from vitlib.training.distributed import barrier, current_context, wrap_model
from vitlib.training.engine import check_classification_head, evaluate, train_one_epoch
from vitlib.training.errors import TrainingConfigError, damaged_run_error
from vitlib.training.fsdp import (
    Parallel,
    autocast_dtype,
    check_parallel,
    encoder_blocks,
    full_model_state,
    full_optimizer_state,
    is_fsdp,
    load_optimizer_state,
)
from vitlib.training.history import History
from vitlib.training.optim import build_optimizer, build_scheduler
from vitlib.training.progress import report
from vitlib.training.rng import capture_rng_state, restore_rng_state, seed_everything
from vitlib.training.run_dir import (
    BEST,
    HISTORY_FILE,
    LAST,
    STATE_FILE,
    load_model_files,
    load_training_state,
    prepare_output_dir,
    save_checkpoint,
    write_json,
)

logger = logging.getLogger("vitlib.training")

STATE_FORMAT_VERSION = 1
EpochCallback = Callable[[int, History], None]


def _resolve_config(config: TrainConfig | None, overrides: dict[str, Any]) -> TrainConfig:
    known = [field.name for field in dataclasses.fields(TrainConfig)]
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise TypeError(
            f"fit() got unknown training option(s) {unknown}{did_you_mean(unknown[0], known)}; "
            f"expected TrainConfig fields: {', '.join(known)}."
        )
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(
            f"config is a {type(config).__name__}; expected a vitlib.training.TrainConfig or None "
            "(pass options as keywords, e.g. fit(..., lr=1e-3))."
        )
    base = config if config is not None else TrainConfig()
    return dataclasses.replace(base, **overrides) if overrides else base


def _check_same_config(saved: dict[str, Any], config: TrainConfig, run_dir: Path) -> None:
    """Refuse to resume with another recipe; the run's length (``max_steps``) may change."""
    given = config.to_dict()
    names = (set(saved) | set(given)) - {"max_steps"}
    changed = sorted(name for name in names if saved.get(name) != given.get(name))
    if changed:
        differences = "; ".join(
            f"{name}: saved {saved.get(name)!r}, given {given.get(name)!r}" for name in changed
        )
        raise TrainingConfigError(
            f"resume=True with training options that differ from the run saved in {run_dir} "
            f"({differences}); pass the saved values to resume it, or start a new run "
            "(overwrite=True or another output_dir)."
        )


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


def _generators(loader: DataLoader[Any]) -> dict[str, torch.Generator]:
    """The generators deciding the train order (and, via the workers' seeds, augmentations)."""
    found: dict[str, torch.Generator] = {}
    if loader.generator is not None:
        found["loader"] = loader.generator
    sampler_generator = getattr(loader.sampler, "generator", None)
    if isinstance(sampler_generator, torch.Generator) and sampler_generator is not loader.generator:
        found["sampler"] = sampler_generator
    return found


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

    Under ``torchrun`` (a process group already joined, e.g. by
    [`distributed_session`][vitlib.training.distributed.distributed_session]) the model is
    wrapped in ``DistributedDataParallel`` (``parallel="ddp"``) or sharded in place with FSDP2
    (``parallel="fsdp"``); metrics are summed over ranks, and only rank 0 logs and saves (a
    sharded model's full weights and optimiser state are gathered onto it first).

    Args:
        model: The model; moved to ``device`` and trained in place.
        train_loader: Training batches ``(images, labels)``; its ``DistributedSampler``, if any,
            gets ``set_epoch`` every epoch.
        test_loader: Evaluation batches.
        epochs: Total epochs of the run (a resumed run continues up to this number).
        config: The recipe; keyword ``overrides`` replace its fields (``fit(..., lr=3e-4,
            warmup_steps=100)``).
        output_dir: Run directory for ``last/``, ``best/`` and ``history.json``; ``None`` saves
            nothing.
        resume: Continue the run saved in ``output_dir/last``; reaches the same weights as an
            uninterrupted run.
        overwrite: Replace the run in ``output_dir`` (only the entries a run writes are deleted).
        seed: Seeds Python, NumPy and torch at the start of a new run (a resumed run restores the
            saved RNGs).
        device: Where to train; default the model's device.
        progress: Progress bars (tqdm, ``vitlib[progress]``) or log lines during each epoch.
        on_epoch_end: Called as ``on_epoch_end(epoch, history)`` after each epoch is saved (1-based
            epoch).
        grad_checkpointing: Recompute each encoder block in the backward pass to save memory
            (the model's ``set_grad_checkpointing``; same gradients, more compute). Not part of
            the recipe: a run may be resumed with it on or off.
        parallel: How a multi-process run shares the work: ``"ddp"`` (default) keeps a full copy
            of the model, its gradients and optimiser state in every process; ``"fsdp"`` shards
            them (`vitlib.training.fsdp`: one unit per encoder block plus the root; with
            ``amp_dtype=torch.bfloat16`` the parameters are gathered and used in bf16 and the
            gradients reduced in float32). ``"fsdp"`` needs a process group (``torchrun``) and
            leaves the model sharded after the run; its saved ``last/`` and ``best/`` are the
            usual single-process files. Not part of the recipe: a run may be resumed under the
            other mode or another number of processes.
        **overrides: ``TrainConfig`` fields.

    Returns:
        The per-epoch `History` (including the epochs before a resume).

    Raises:
        RunExistsError: ``output_dir`` is not empty and neither ``resume`` nor ``overwrite`` was
            given.
        NoRunToResumeError: ``resume=True`` but ``output_dir`` holds no saved run.
        CheckpointError: ``resume=True`` but a file of ``output_dir/last`` is missing, damaged,
            incomplete, refused (not plain data) or from a newer vitlib; the message names it and
            the way out.
        NonFiniteLossError: The training loss became NaN or infinite.
        NonFiniteEvalLossError: The test loss of a batch was NaN or infinite.
        DataError: A loader yields no batches, or labels that are not int64 class indices in
            ``[0, num_classes)`` of the model's outputs (refused before that batch's step).
        TrainingConfigError: An invalid option (``epochs < 1``, ``lr <= 0``, an unknown
            optimiser, an unknown ``parallel``, ``parallel="fsdp"`` without a process group or
            with a model without encoder blocks...), or a [`vitlib.ViT`][vitlib.ViT] without a
            head (``num_classes=0``).
    """
    train_config = _resolve_config(config, overrides)
    check_parallel(parallel)
    if parallel == "fsdp":
        encoder_blocks(model)  # refuse a model it cannot shard before touching output_dir
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise TrainingConfigError(f"epochs={epochs!r} is invalid; expected an integer >= 1.")
    check_classification_head(model)
    batches_per_epoch = _check_train_loader(train_loader)
    _check_test_loader(test_loader)
    context = current_context()
    run_dir = Path(output_dir) if output_dir is not None else None
    if run_dir is None and resume:
        raise TrainingConfigError(
            "resume=True needs the output_dir of the run to continue; pass output_dir=..."
        )
    if run_dir is not None:
        prepare_output_dir(run_dir, resume=resume, overwrite=overwrite, writer=context.is_main)
        barrier()

    if grad_checkpointing:
        _enable_grad_checkpointing(model)
    target = resolve_device(model, device)
    model.to(target)
    if not resume:
        seed_everything(seed)
    saved = _load_run(run_dir, model, train_config) if resume and run_dir is not None else None
    # Sharding replaces the parameters, so the optimiser is built over the sharded ones.
    trained = wrap_model(model, context, parallel, amp_dtype=train_config.amp_dtype)
    amp_dtype = autocast_dtype(parallel, train_config.amp_dtype, target)
    optimizer = build_optimizer(model, train_config)
    total_steps = epochs * math.ceil(batches_per_epoch / train_config.accumulation_steps)
    scheduler = build_scheduler(
        optimizer,
        schedule=train_config.schedule,
        warmup_steps=train_config.warmup_steps,
        total_steps=min(total_steps, train_config.max_steps or total_steps),
        min_lr_ratio=train_config.min_lr_ratio,
    )
    run = _RunPosition(History())
    if saved is not None and run_dir is not None:
        run = _restore(run_dir, saved, model, optimizer, scheduler, train_loader)

    train_loss = nn.CrossEntropyLoss(label_smoothing=train_config.label_smoothing)
    max_steps = train_config.max_steps
    for epoch in range(run.epoch + 1, epochs + 1):
        if max_steps is not None and run.global_step >= max_steps:
            break
        if isinstance(train_loader.sampler, DistributedSampler):
            train_loader.sampler.set_epoch(epoch - 1)
        train = train_one_epoch(
            trained,
            train_loader,
            optimizer,
            scheduler=scheduler,
            loss_fn=train_loss,
            grad_clip_norm=train_config.grad_clip_norm,
            accumulation_steps=train_config.accumulation_steps,
            amp_dtype=amp_dtype,
            device=target,
            step_offset=run.global_step,
            epoch=epoch,
            max_steps=None if max_steps is None else max_steps - run.global_step,
            progress=progress and context.is_main,
        )
        test = evaluate(model, test_loader, amp_dtype=amp_dtype, device=target, epoch=epoch)
        lr = float(optimizer.param_groups[0]["lr"])
        run.history.append(
            train_loss=train.loss,
            train_acc=train.accuracy,
            test_loss=test.loss,
            test_acc=test.accuracy,
            lr=lr,
        )
        improved = run.history.best_epoch() == epoch  # ties: the lower test loss
        run = _RunPosition(
            run.history, epoch, run.global_step + train.steps, max(run.best_accuracy, test.accuracy)
        )
        if run_dir is not None:
            _save_epoch(
                run_dir, run, improved, model, train_config, optimizer, scheduler, train_loader
            )
        if context.is_main:
            report(
                "epoch %d/%d  train loss %.4f acc %.4f  test loss %.4f acc %.4f  lr %.3g%s",
                *(epoch, epochs, train.loss, train.accuracy, test.loss, test.accuracy, lr),
                "  (best)" if improved else "",
            )
        if on_epoch_end is not None:
            on_epoch_end(epoch, run.history)
    barrier()
    return run.history


def _enable_grad_checkpointing(model: nn.Module) -> None:
    switch = getattr(model, "set_grad_checkpointing", None)
    if not callable(switch):
        raise TrainingConfigError(
            f"grad_checkpointing=True needs a model with set_grad_checkpointing (a vitlib.ViT or a "
            f"timm model), got {type(model).__name__}; wrap its blocks in "
            "torch.utils.checkpoint.checkpoint yourself, or drop the option."
        )
    switch(True)


@dataclass(frozen=True)
class _RunPosition:
    """Where a run stands after its last completed epoch."""

    history: History
    epoch: int = 0
    global_step: int = 0
    best_accuracy: float = -math.inf


def _training_state(
    run: _RunPosition,
    config: TrainConfig,
    optimizer_state: dict[str, Any],
    scheduler: LRScheduler,
    train_loader: DataLoader[Any],
) -> dict[str, Any]:
    """Everything besides the weights that an exact resume needs, as ``weights_only`` types."""
    return {
        "format_version": STATE_FORMAT_VERSION,
        "epoch": run.epoch,
        "global_step": run.global_step,
        "best_accuracy": run.best_accuracy,
        "history": run.history.as_dict(),
        "train_config": config.to_dict(),
        "optimizer": optimizer_state,
        "scheduler": scheduler.state_dict(),
        "rng": capture_rng_state(),
        "generators": {name: gen.get_state() for name, gen in _generators(train_loader).items()},
    }


def _save_epoch(
    run_dir: Path,
    run: _RunPosition,
    improved: bool,
    model: nn.Module,
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    train_loader: DataLoader[Any],
) -> None:
    """Save ``last/`` (and ``best/`` if ``improved``) and the history, from rank 0 alone.

    A sharded model's weights and optimiser state are first gathered onto rank 0 (every rank
    takes part in that; only rank 0 writes). The optimiser state of a sharded run is keyed by
    parameter name, which `load_optimizer_state` reads with any number of processes.
    """
    weights: dict[str, torch.Tensor] | None = None
    if is_fsdp(model):
        weights = full_model_state(model)
        optimizer_state = full_optimizer_state(model, optimizer)
    if not current_context().is_main:
        return
    if weights is None:
        optimizer_state = optimizer.state_dict()
    if improved:
        save_checkpoint(model, run_dir / BEST, weights=weights)
    state = _training_state(run, config, optimizer_state, scheduler, train_loader)
    save_checkpoint(model, run_dir / LAST, training_state=state, weights=weights)
    write_json(run_dir / HISTORY_FILE, run.history.as_dict())


# The entries of training_state.pt (format 1) and what each must be, checked before any is used.
_STATE_ENTRIES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "format_version": (int, "an int"),
    "epoch": (int, "an int >= 1"),
    "global_step": (int, "an int >= 0"),
    "best_accuracy": ((int, float), "a number"),
    "history": (dict, "a dict of per-epoch lists"),
    "train_config": (dict, "a dict of TrainConfig fields"),
    "optimizer": (dict, "an optimizer state dict"),
    "scheduler": (dict, "a scheduler state dict"),
    "rng": (dict, "a dict of generator states"),
    "generators": (dict, "a dict of generator states"),
}
_NESTED_ENTRIES: dict[str, tuple[str, ...]] = {
    "optimizer": ("state", "param_groups"),
    "rng": ("python", "numpy", "torch", "cuda"),
}


def _check_training_state(state: dict[str, Any], path: Path) -> History:
    """Check the entries of a loaded ``training_state.pt``; return its history.

    Raises:
        CheckpointError: A newer ``format_version``, or missing, mistyped or inconsistent entries.
    """
    version = state.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool):
        if version > STATE_FORMAT_VERSION:
            raise CheckpointError(
                f"{path} has format_version {version}, written by a newer vitlib; this vitlib "
                f"({__version__}) reads format_version {STATE_FORMAT_VERSION}. Upgrade vitlib "
                "(pip install -U vitlib) to resume the run, or start it over with overwrite=True."
            )
        if version < 1:
            raise damaged_run_error(
                path, f"has format_version {version}; expected 1 to {STATE_FORMAT_VERSION}"
            )
    missing = [name for name in _STATE_ENTRIES if name not in state]
    if missing:
        raise damaged_run_error(
            path,
            f"is incomplete: it lacks the entr{'y' if len(missing) == 1 else 'ies'} "
            f"{', '.join(map(repr, missing))} (expected all of {', '.join(_STATE_ENTRIES)})",
        )
    for name, (kind, expected) in _STATE_ENTRIES.items():
        value = state[name]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise damaged_run_error(
                path, f"has a {type(value).__name__} as its {name!r} entry; expected {expected}"
            )
    for name, keys in _NESTED_ENTRIES.items():
        lacking = [key for key in keys if key not in state[name]]
        if lacking:
            raise damaged_run_error(
                path, f"is incomplete: its {name!r} entry lacks {', '.join(map(repr, lacking))}"
            )
    if state["epoch"] < 1 or state["global_step"] < 0:
        raise damaged_run_error(
            path,
            f"says epoch {state['epoch']}, global step {state['global_step']}; expected an "
            "epoch >= 1 and a global step >= 0",
        )
    try:
        history = History.from_dict(state["history"])
    except (ValueError, TypeError) as error:
        raise damaged_run_error(path, f"has a malformed history ({error})") from error
    if len(history) != state["epoch"]:
        raise damaged_run_error(
            path,
            f"has {len(history)} epochs of history for epoch {state['epoch']}; expected one "
            "entry per epoch",
        )
    return history


@dataclass(frozen=True)
class _SavedRun:
    """A checked ``training_state.pt`` and its history."""

    state: dict[str, Any]
    history: History


def _load_run(run_dir: Path, model: nn.Module, config: TrainConfig) -> _SavedRun:
    """Check ``run_dir/last`` and load its weights into the (not yet sharded) ``model``.

    The entries of ``training_state.pt`` and the model files are checked before anything is
    loaded into the model.
    """
    if is_fsdp(model):
        raise TrainingConfigError(
            f"resume=True with a model already sharded by fully_shard ({type(model).__name__}); "
            "expected the unsharded model, which fit loads the saved weights into and then "
            "shards. Pass the model as built (e.g. vitlib.create_model(...)) with parallel='fsdp'."
        )
    state = load_training_state(run_dir / LAST)
    history = _check_training_state(state, run_dir / LAST / STATE_FILE)
    _check_same_config(state["train_config"], config, run_dir)
    load_model_files(model, run_dir / LAST)
    return _SavedRun(state, history)


def _restore(
    run_dir: Path,
    saved: _SavedRun,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    train_loader: DataLoader[Any],
) -> _RunPosition:
    """Load the optimiser, scheduler, RNG and loader-generator states of ``saved``."""
    state = saved.state
    try:
        load_optimizer_state(model, optimizer, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"])
        for name, generator in _generators(train_loader).items():
            if name in state["generators"]:
                generator.set_state(state["generators"][name])
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as error:
        raise damaged_run_error(
            run_dir / LAST / STATE_FILE,
            "does not fit this run: its optimiser, scheduler or generator states could not be "
            f"restored ({type(error).__name__}: {error})",
        ) from error
    run = _RunPosition(
        saved.history, state["epoch"], state["global_step"], float(state["best_accuracy"])
    )
    report("resumed %s after epoch %d (global step %d)", run_dir, run.epoch, run.global_step)
    return run
