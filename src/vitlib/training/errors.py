"""Exceptions of the training engine; each is a :class:`vitlib.VitlibError` and a built-in."""

from __future__ import annotations

from vitlib.errors import VitlibError


class TrainingConfigError(VitlibError, ValueError):
    """A training setting (learning rate, epochs, optimiser name...) is out of range or unknown."""


class RunExistsError(VitlibError, FileExistsError):
    """The output directory already holds a run; resume it or overwrite it explicitly."""


class NoRunToResumeError(VitlibError, FileNotFoundError):
    """``resume=True`` was given, but the output directory holds no saved run."""


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
