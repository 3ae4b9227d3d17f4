"""The final test of [`fit`][vitlib.training.fit]: the best epoch's weights, kept while the run
goes on, evaluated once on the test loader at the end.

The weights are kept only when there is a test loader: on the CPU, or under FSDP each rank's
shards where they are (no rank holds the whole model); they are put back into the model for the
test alone, so ``fit`` leaves the model with its last epoch's weights, as ``last/`` holds them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vitlib.checkpoints.run_folder import BEST, LAST
from vitlib.training.engine import evaluate
from vitlib.training.fsdp import is_fsdp, load_model_state
from vitlib.training.history import FinalTest, History
from vitlib.training.run_dir import load_model_files

__all__ = ["BestWeights", "final_test", "model_weights"]


def model_weights(model: nn.Module) -> dict[str, Tensor]:
    """A copy of ``model``'s weights: on the CPU, or for a model sharded by FSDP each rank's
    shards (DTensors) where they are."""
    if is_fsdp(model):
        return {name: value.detach().clone() for name, value in model.state_dict().items()}
    return {name: value.detach().to("cpu", copy=True) for name, value in model.state_dict().items()}


class BestWeights:
    """The weights of the best epoch so far, kept for the final test.

    Attributes:
        epoch: The 1-based epoch whose weights are kept (0: none yet).
        weights: Those weights (`model_weights`).
    """

    def __init__(self) -> None:
        self.epoch = 0
        self.weights: dict[str, Tensor] = {}

    def keep(self, model: nn.Module, epoch: int) -> None:
        """Keep ``model``'s weights as those of ``epoch``, the best so far."""
        self.weights, self.epoch = model_weights(model), epoch

    def read_run(self, model: nn.Module, run_dir: Path, epoch: int) -> None:
        """Keep the weights of a resumed run's ``best/`` (epoch ``epoch``), read through the
        unsharded ``model``, which is left with the weights of ``last/`` (as resuming loads)."""
        load_model_files(model, run_dir / BEST)
        self.keep(model, epoch)
        load_model_files(model, run_dir / LAST)

    @contextmanager
    def loaded(self, model: nn.Module, current: int) -> Iterator[None]:
        """Hold the kept weights in ``model`` for the block, then put back those of epoch
        ``current`` that it holds now (nothing to swap when they are the kept ones)."""
        if self.epoch == current:
            yield
            return
        now = model_weights(model)
        load_model_state(model, self.weights)
        try:
            yield
        finally:
            load_model_state(model, now)


def final_test(
    model: nn.Module,
    loader: Iterable[Any],
    best: BestWeights,
    history: History,
    *,
    amp_dtype: torch.dtype | None,
    device: torch.device,
) -> FinalTest:
    """Evaluate the best epoch's weights on ``loader`` once; ``history``'s last epoch is the
    one ``model`` holds now."""
    with best.loaded(model, len(history)):
        result = evaluate(model, loader, amp_dtype=amp_dtype, device=device)
    return FinalTest(
        loss=result.loss, acc=result.accuracy, epoch=best.epoch, samples=result.samples
    )
