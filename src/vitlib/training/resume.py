"""Resuming a run exactly: what ``last/training_state.pt`` holds, how it is checked, saved and
restored (the weights are in ``last/`` beside it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from vitlib._version import __version__
from vitlib.checkpoints.run_folder import BEST, HISTORY_FILE, LAST, STATE_FILE
from vitlib.checkpoints.weights import load_torch_file
from vitlib.errors import CheckpointError, SaveError
from vitlib.training.config import TrainConfig
from vitlib.training.distributed import current_context
from vitlib.training.errors import TrainingConfigError, damaged_run_error, damaged_run_fix
from vitlib.training.fsdp import (
    full_model_state,
    full_optimizer_state,
    is_fsdp,
    load_optimizer_state,
)
from vitlib.training.history import History
from vitlib.training.progress import report
from vitlib.training.rng import capture_rng_state, restore_rng_state
from vitlib.training.run_dir import (
    check_same_settings,
    load_model_files,
    save_checkpoint,
    write_run_json,
)

__all__ = [
    "STATE_FORMAT_VERSION",
    "RunPosition",
    "SavedRun",
    "check_run_length",
    "check_training_state",
    "load_run",
    "load_training_state",
    "loader_generators",
    "restore",
    "save_epoch",
    "training_state",
]

#: The ``format_version`` of ``training_state.pt`` this vitlib writes and reads.
STATE_FORMAT_VERSION: Final = 1


def load_training_state(directory: Path) -> dict[str, Any]:
    """Read ``directory/training_state.pt`` without running anything in it (weights-only).

    Only the file and its outer type are checked here; the entries by `check_training_state`.

    Raises:
        CheckpointError: The file is missing, empty, truncated or corrupt, holds something other
            than the plain data ``fit`` saves (refused), or is not a dict; the message names the
            file and what to do instead of resuming.
    """
    path = directory / STATE_FILE
    if not path.is_file():
        problem = "is missing" if not path.exists() else "is not a regular file"
        raise damaged_run_error(path, problem)
    state = load_torch_file(path, fix=damaged_run_fix(path))
    if not isinstance(state, dict):
        raise damaged_run_error(
            path, f"holds a {type(state).__name__}; expected the dict that fit() saves"
        )
    return state


@dataclass(frozen=True)
class RunPosition:
    """Where a run stands after its last completed epoch."""

    history: History
    epoch: int = 0
    global_step: int = 0
    best_accuracy: float = -math.inf


def training_state(
    run: RunPosition,
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
        "generators": {
            name: gen.get_state() for name, gen in loader_generators(train_loader).items()
        },
    }


def save_epoch(
    run_dir: Path,
    run: RunPosition,
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
    state = training_state(run, config, optimizer_state, scheduler, train_loader)
    saved = run.epoch - 1  # the epoch in last/ until this save replaces it
    try:  # best/ first: a failure then leaves last/ and the history whole, one epoch behind
        if improved:
            save_checkpoint(model, run_dir / BEST, weights=weights)
        save_checkpoint(model, run_dir / LAST, training_state=state, weights=weights)
        saved = run.epoch
        write_run_json(run_dir, HISTORY_FILE, run.history.as_dict())
    except SaveError as error:
        raise SaveError(
            error.errno, f"{error}. {_after_failed_save(run_dir, saved)}", error.filename
        ) from error


def _after_failed_save(run_dir: Path, saved: int) -> str:
    """What a save that failed leaves of the run: ``saved``, the epoch in ``last/`` (0: none)."""
    if saved == 0:
        return (
            f"No epoch of the run in {run_dir} was saved yet: free some space, then start it "
            "again (overwrite=True, vitlib train --overwrite)"
        )
    return (
        f"The run's last complete checkpoint, epoch {saved}, is intact in {run_dir / LAST}: "
        "free some space, then continue the run with resume=True (vitlib train --resume)"
    )


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


def check_training_state(state: dict[str, Any], path: Path) -> History:
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
class SavedRun:
    """A checked ``training_state.pt`` and its history; ``complete`` says why nothing is left
    to train (``None`` while there is)."""

    state: dict[str, Any]
    history: History
    complete: str | None = None


def check_run_length(
    state: dict[str, Any], run_dir: Path, epochs: int, max_steps: int | None
) -> str | None:
    """Refuse to resume a run for fewer epochs (or steps) than it has; say when it has them all.

    Returns:
        ``None`` while the run has epochs to train; else the message that it is complete.

    Raises:
        TrainingConfigError: The run has more epochs than ``epochs``, or took more optimiser
            steps than ``max_steps``: a run cannot be shortened.
    """
    done, steps = state["epoch"], state["global_step"]
    if epochs < done or (max_steps is not None and steps > max_steps):
        asked = f"epochs={epochs}" if epochs < done else f"max_steps={max_steps}"
        flag = f"--epochs {epochs}" if epochs < done else f"--max-steps {max_steps}"
        raise TrainingConfigError(
            f"resume=True with {asked} ({flag}), but the run in {run_dir} already has {done} "
            f"epochs ({steps} optimiser steps): a run cannot be shortened, and nothing was "
            f"changed. Its weights after epoch {done} are in {run_dir / LAST}. Pass epochs="
            f"{done} or more (vitlib train --resume --epochs N) to keep or extend it, or start a "
            "new run (overwrite=True, --overwrite, or another output_dir)."
        )
    if done < epochs and (max_steps is None or steps < max_steps):
        return None
    reached = (
        f"it has its {done} epochs (epochs={epochs})"
        if done == epochs
        else f"it took its max_steps={max_steps} optimiser steps, in {done} epochs"
    )
    further = (
        f"more epochs (e.g. epochs={done + 1}; vitlib train --resume --epochs {done + 1})"
        if done == epochs
        else f"a larger max_steps (--max-steps, now {max_steps})"
    )
    return (
        f"resume=True: the run in {run_dir} is already complete: {reached}; nothing was "
        f"trained. To train it further, resume it with {further}."
    )


def load_run(
    run_dir: Path,
    model: nn.Module,
    config: TrainConfig,
    epochs: int,
    val_name: str = "validation",
) -> SavedRun:
    """Check ``run_dir/last`` and load its weights into the (not yet sharded) ``model``.

    The entries of ``training_state.pt``, the recipe, the data its best epochs were chosen on
    (``val_name``), the run's length against ``epochs`` and ``config.max_steps``, and the model
    files are checked before anything is loaded into the model.

    Raises:
        CheckpointError: A file of the run is missing, damaged or from a newer vitlib.
        TrainingConfigError: The recipe or ``val_name`` differs, or the run is longer than asked.
    """
    if is_fsdp(model):
        raise TrainingConfigError(
            f"resume=True with a model already sharded by fully_shard ({type(model).__name__}); "
            "expected the unsharded model, which fit loads the saved weights into and then "
            "shards. Pass the model as built (e.g. vitlib.create_model(...)) with parallel='fsdp'."
        )
    state = load_training_state(run_dir / LAST)
    history = check_training_state(state, run_dir / LAST / STATE_FILE)
    check_same_settings(state["train_config"], config.to_dict(), run_dir, may_change=("max_steps",))
    if history.val_name != val_name:
        raise TrainingConfigError(
            f"resume=True with val_name={val_name!r}, but the run in {run_dir} chose its best "
            f"epochs on {history.val_name!r} data (val_name={history.val_name!r}; the runs of an "
            "earlier vitlib all chose on the loader it called test_loader). Resume it with "
            f"val_name={history.val_name!r} and the same loader (vitlib train --val-split 0), or "
            "start a new run."
        )
    complete = check_run_length(state, run_dir, epochs, config.max_steps)
    load_model_files(model, run_dir / LAST)
    return SavedRun(state, history, complete)


def restore(
    run_dir: Path,
    saved: SavedRun,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    train_loader: DataLoader[Any],
) -> RunPosition:
    """Load the optimiser, scheduler, RNG and loader-generator states of ``saved``."""
    state = saved.state
    try:
        load_optimizer_state(model, optimizer, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"])
        for name, generator in loader_generators(train_loader).items():
            if name in state["generators"]:
                generator.set_state(state["generators"][name])
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as error:
        raise damaged_run_error(
            run_dir / LAST / STATE_FILE,
            "does not fit this run: its optimiser, scheduler or generator states could not be "
            f"restored ({type(error).__name__}: {error})",
        ) from error
    run = RunPosition(
        saved.history, state["epoch"], state["global_step"], float(state["best_accuracy"])
    )
    report("resumed %s after epoch %d (global step %d)", run_dir, run.epoch, run.global_step)
    return run


def loader_generators(loader: DataLoader[Any]) -> dict[str, torch.Generator]:
    """The generators deciding the train order (and, via the workers' seeds, augmentations)."""
    found: dict[str, torch.Generator] = {}
    if loader.generator is not None:
        found["loader"] = loader.generator
    sampler_generator = getattr(loader.sampler, "generator", None)
    if isinstance(sampler_generator, torch.Generator) and sampler_generator is not loader.generator:
        found["sampler"] = sampler_generator
    return found
