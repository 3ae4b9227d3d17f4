"""Optimiser and learning-rate schedule of the paper (Dosovitskiy et al., 2020, Appendix B.1).

Weight decay touches weight matrices only: every parameter with ``ndim <= 1`` (biases, norm scales)
and every name listed by ``model.no_weight_decay()`` (class token, position embeddings) is left
undecayed. The schedule is a linear warmup followed by cosine or linear decay, advanced once per
optimiser step.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR

from vitlib._checks import check_positive_int
from vitlib.training.config import TrainConfig, check_option
from vitlib.training.distributed import current_context
from vitlib.training.errors import TrainingConfigError

logger = logging.getLogger("vitlib.training")


def effective_warmup(warmup_steps: int, total_steps: int) -> int:
    """The warmup steps a run of ``total_steps`` uses: at most half of the run.

    A warmup as long as the run (a fixed 50 steps on a 20-step fine-tune) would only ever raise
    the learning rate; capped at ``total_steps // 2``, the run warms up, then decays.
    """
    return min(warmup_steps, total_steps // 2)


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """The names ``model.no_weight_decay()`` returns (empty for a model without the method)."""
    method = getattr(model, "no_weight_decay", None)
    return set() if method is None else {str(name) for name in method()}


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split the trainable parameters into a decayed and an undecayed optimiser group.

    Args:
        model: The model to optimise (not wrapped in ``DistributedDataParallel``, so names match).
        weight_decay: Decay of the first group.

    Returns:
        ``[{"params": decayed, "weight_decay": weight_decay}, {"params": undecayed, "weight_decay":
        0.0}]``, without empty groups. A parameter is undecayed if ``ndim <= 1`` or its name (or a
        module prefix of it) is in ``model.no_weight_decay()``. Frozen parameters
        (``requires_grad=False``) are left out.
    """
    excluded = no_weight_decay_names(model)
    decayed: list[nn.Parameter] = []
    undecayed: list[nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        listed = any(name == item or name.startswith(item + ".") for item in excluded)
        (undecayed if parameter.ndim <= 1 or listed else decayed).append(parameter)
    groups = [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": undecayed, "weight_decay": 0.0},
    ]
    groups = [group for group in groups if group["params"]]
    if not groups:
        raise TrainingConfigError(
            f"{type(model).__name__} has no trainable parameters; expected at least one with "
            "requires_grad=True. Unfreeze some parameters before training."
        )
    return groups


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``config.optimizer`` over `parameter_groups` of ``model``.

    Adam and AdamW run PyTorch's fused kernel where every parameter is a floating-point tensor
    on the CPU or a CUDA device (the same update to rounding; docs/training.md has the timing),
    else PyTorch's default implementation.
    """
    groups = parameter_groups(model, config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    adam = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    fused = _fused_kernel_fits(p for group in groups for p in group["params"])
    return adam(groups, lr=config.lr, betas=config.betas, fused=fused or None)


def _fused_kernel_fits(parameters: Iterable[Tensor]) -> bool:
    """Whether PyTorch's fused Adam kernel takes every one of ``parameters``."""
    return all(
        p.device.type in ("cpu", "cuda")
        and p.dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16)
        for p in parameters
    )


def lr_factor(
    step: int, *, warmup_steps: int, total_steps: int, schedule: str, min_lr_ratio: float = 0.0
) -> float:
    """Multiplier of the peak learning rate for the optimiser step ``step`` (0-based).

    Warmup rises linearly, ``(step + 1) / (warmup_steps + 1)``, so the first step already learns;
    after it the factor decays from 1 to ``min_lr_ratio`` at ``total_steps`` (cosine: ``0.5 * (1 +
    cos(pi * progress))``). Steps beyond ``total_steps`` keep the final value. The warmup takes at
    most half of the run (`effective_warmup`), so the rate always decays too.
    """
    check_option("schedule", schedule)
    warmup_steps = effective_warmup(warmup_steps, total_steps)
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    decay = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
    return min_lr_ratio + (1.0 - min_lr_ratio) * decay


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    schedule: str,
    warmup_steps: int,
    total_steps: int,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """A ``LambdaLR`` following `lr_factor`; step it after every optimiser step.

    A ``warmup_steps`` longer than half the run is shortened to half of it, with a log line that
    says so (`effective_warmup`).
    """
    check_positive_int("total_steps", total_steps)
    used = effective_warmup(warmup_steps, total_steps)
    if used < warmup_steps and current_context().is_main:  # once, not once per process
        logger.warning(
            "warmup_steps=%d (--warmup-steps) is more than half of this %d-step run; warming "
            "up for %d steps, so that the learning rate also decays",
            warmup_steps,
            total_steps,
            used,
        )

    def factor(step: int) -> float:
        return lr_factor(
            step,
            warmup_steps=warmup_steps,
            total_steps=total_steps,
            schedule=schedule,
            min_lr_ratio=min_lr_ratio,
        )

    # A plain function, not a callable object: LambdaLR then leaves it out of its state_dict, so
    # resuming a run with more epochs uses the new total instead of the saved one.
    return LambdaLR(optimizer, factor)
