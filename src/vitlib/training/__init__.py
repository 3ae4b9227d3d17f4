"""Training and fine-tuning: the paper's recipe, exact metrics, resumable run directories, DDP.

Public API::

    from vitlib.training import fit, TrainConfig
    history = fit(model, train_loader, val_loader, test_loader=test_loader, epochs=10, lr=1e-3,
                  warmup_steps=100, amp_dtype=torch.bfloat16, output_dir="runs/digits")
    history.best_epoch()       # chosen on val_loader (its model is in runs/digits/best)
    history.test               # test loss and accuracy of that epoch, evaluated once at the end
    history.as_dict()          # train_loss, train_acc, val_loss, val_acc, lr per epoch, and test

See ``docs/training.md`` for the recipe, the run directory layout (and its lock), resuming and
``torchrun``.
"""

from __future__ import annotations

from vitlib.training.config import OPTIMIZERS, SCHEDULES, TrainConfig
from vitlib.training.distributed import (
    DistributedContext,
    current_context,
    distributed_session,
    init_distributed,
    unwrap_model,
)
from vitlib.training.engine import EpochResult, EvalResult, evaluate, train_one_epoch
from vitlib.training.errors import (
    NonFiniteEvalLossError,
    NonFiniteLossError,
    NoRunToResumeError,
    RankFailedError,
    RunExistsError,
    RunInProgressError,
    TrainingConfigError,
)
from vitlib.training.history import FinalTest, History
from vitlib.training.loop import fit
from vitlib.training.optim import build_optimizer, build_scheduler, lr_factor, parameter_groups
from vitlib.training.rng import seed_everything

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "DistributedContext",
    "EpochResult",
    "EvalResult",
    "FinalTest",
    "History",
    "NoRunToResumeError",
    "NonFiniteEvalLossError",
    "NonFiniteLossError",
    "RankFailedError",
    "RunExistsError",
    "RunInProgressError",
    "TrainConfig",
    "TrainingConfigError",
    "build_optimizer",
    "build_scheduler",
    "current_context",
    "distributed_session",
    "evaluate",
    "fit",
    "init_distributed",
    "lr_factor",
    "parameter_groups",
    "seed_everything",
    "train_one_epoch",
    "unwrap_model",
]
