"""Exceptions of the training engine; each is a ``vitlib.VitlibError`` and a built-in."""

from __future__ import annotations

from pathlib import Path

from vitlib.errors import CheckpointError, ConfigError, VitlibError


class TrainingConfigError(ConfigError):
    """Training settings that contradict each other or the run (``resume`` with ``overwrite``,
    FSDP without a process group, a model without a head). A single setting out of range raises
    [`ConfigError`][vitlib.ConfigError] as everywhere else."""


class RunExistsError(VitlibError, FileExistsError):
    """The output directory already holds a run; resume it or overwrite it explicitly."""


class NoRunToResumeError(VitlibError, FileNotFoundError):
    """``resume=True`` was given, but the output directory holds no saved run."""


class RunInProgressError(VitlibError, RuntimeError):
    """Another run holds the output directory's lock (``.vitlib-run.lock``): it is training
    there now. The message names the process holding it (id, host, start time) and the ways
    out."""


class RankFailedError(VitlibError, RuntimeError):
    """Under ``torchrun``, rank 0 failed at a step it does alone (taking the run's lock,
    preparing its folder); the other ranks raise this, with rank 0's message, instead of waiting
    for it forever."""


class NonFiniteLossError(VitlibError, RuntimeError):
    """The training loss became NaN or infinite; the message names the epoch and the global step.

    Attributes:
        loss: The non-finite value.
        epoch: The 1-based epoch it happened in.
        global_step: Optimiser steps completed before the offending batch.
    """

    def __init__(
        self, loss: float, *, epoch: int, global_step: int, batch_index: int, lr: float
    ) -> None:
        self.loss = loss
        self.epoch = epoch
        self.global_step = global_step
        super().__init__(
            f"training loss became {loss} at epoch {epoch}, global step {global_step} "
            f"(batch {batch_index} of the epoch, learning rate {lr:.3g}); expected a finite loss. "
            "Lower the learning rate or add warmup, keep gradient clipping on "
            "(grad_clip_norm=1.0), or check the inputs and labels for NaN/inf values."
        )


class NonFiniteEvalLossError(VitlibError, RuntimeError):
    """The evaluation loss of a batch was NaN or infinite; the message names the batch.

    A sibling of [`NonFiniteLossError`][vitlib.training.NonFiniteLossError] (catch both, or
    ``RuntimeError``): in ``fit`` the training loss was finite, so the cause is usually the
    evaluation data (a NaN or inf image).

    Attributes:
        loss: The non-finite value.
        batch_index: The 0-based index of the evaluation batch.
        epoch: The 1-based epoch whose evaluation it was, or ``None`` outside ``fit``.
    """

    def __init__(self, loss: float, *, batch_index: int, epoch: int | None = None) -> None:
        self.loss = loss
        self.batch_index = batch_index
        self.epoch = epoch
        when = "" if epoch is None else f" after epoch {epoch}"
        super().__init__(
            f"evaluation loss became {loss} in evaluation batch {batch_index}{when}; expected a "
            "finite loss. Check that batch's images for NaN/inf values (e.g. "
            "torch.isfinite(images).all()); if they are finite, the model's weights have "
            "diverged (lower the learning rate, keep gradient clipping on)."
        )


def damaged_run_fix(path: Path) -> str:
    """What to do when ``path``, a file of ``<run>/last/``, keeps the run from resuming."""
    run = path.parent.parent
    return (
        f"the run in {run} cannot be resumed. Start it over with overwrite=True (vitlib train "
        "--overwrite), which deletes its last/, best/ and history.json; or keep what it learnt: "
        f"load the weights in {run / 'best'} (vitlib.load_pretrained for a ViT, "
        "safetensors.torch.load_model otherwise) and fit them as a new run in another output_dir "
        "(the optimiser state, schedule position and history are not carried over, so it will "
        "not match an uninterrupted run)"
    )


def damaged_run_error(path: Path, problem: str) -> CheckpointError:
    """A ``vitlib.errors.CheckpointError`` for a file of a run that cannot be resumed.

    Args:
        path: The damaged or missing file, ``<run>/last/<name>``.
        problem: What is wrong with it, e.g. ``"is missing"``.

    Returns:
        The error to raise: it names ``path`` and ``problem``, and says what can be done instead.
    """
    return CheckpointError(f"{path} {problem}; {damaged_run_fix(path)}.")
