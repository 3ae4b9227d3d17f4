"""`TrainConfig`: the optimisation recipe of a training run, validated once at construction.

The defaults follow the paper (Dosovitskiy et al., 2020, §4.1 and Appendix B.1): Adam with betas
(0.9, 0.999) (as AdamW, whose decay does not pass through the Adam statistics), weight decay 0.1,
linear warmup then decay per step (cosine here), and global-norm gradient clipping at 1.0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

import torch

from vitlib._checks import did_you_mean
from vitlib.training.errors import TrainingConfigError

OPTIMIZERS: Final[tuple[str, ...]] = ("adamw", "adam", "sgd")
SCHEDULES: Final[tuple[str, ...]] = ("cosine", "linear", "constant")
AMP_DTYPES: Final[Mapping[str, torch.dtype]] = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def _choice(name: str, value: object, choices: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in choices:
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        raise TrainingConfigError(
            f"{name}={value!r} is not supported; "
            f"expected one of {', '.join(map(repr, choices))}{hint}."
        )


def _number(
    name: str, value: object, *, low: float, high: float, low_open: bool, high_open: bool
) -> None:
    ok = False
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        above = value > low if low_open else value >= low
        below = value < high if high_open else value <= high
        ok = above and below
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise TrainingConfigError(
            f"{name}={value!r} is out of range; expected a finite number in {interval}."
        )


def _count(name: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise TrainingConfigError(f"{name}={value!r} is invalid; expected an integer >= {minimum}.")


def _betas(name: str, value: object) -> None:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TrainingConfigError(
            f"{name}={value!r} is invalid; expected two numbers, e.g. (0.9, 0.999)."
        )
    for beta in value:
        _number(f"each of {name}", beta, low=0.0, high=1.0, low_open=False, high_open=True)


def _amp_dtype(name: str, value: object) -> None:
    if value not in (None, torch.bfloat16):
        raise TrainingConfigError(
            f"{name}={value!r} is not supported; expected torch.bfloat16 or None "
            "(float16 would need loss scaling, which bfloat16 does not)."
        )


def _optional(check: Callable[[str, object], None]) -> Callable[[str, object], None]:
    def checked(name: str, value: object) -> None:
        if value is not None:
            check(name, value)

    return checked


# The one validation of every training setting: TrainConfig runs it on construction, and the
# functions that take a setting as a plain argument (train_one_epoch, lr_factor...) run it too.
_CHECKS: Final[dict[str, Callable[[str, object], None]]] = {
    "optimizer": lambda name, value: _choice(name, value, OPTIMIZERS),
    "lr": lambda name, value: _number(
        name, value, low=0.0, high=math.inf, low_open=True, high_open=True
    ),
    "weight_decay": lambda name, value: _number(
        name, value, low=0.0, high=math.inf, low_open=False, high_open=True
    ),
    "betas": _betas,
    "momentum": lambda name, value: _number(
        name, value, low=0.0, high=1.0, low_open=False, high_open=True
    ),
    "schedule": lambda name, value: _choice(name, value, SCHEDULES),
    "warmup_steps": lambda name, value: _count(name, value, minimum=0),
    "min_lr_ratio": lambda name, value: _number(
        name, value, low=0.0, high=1.0, low_open=False, high_open=False
    ),
    "grad_clip_norm": _optional(
        lambda name, value: _number(
            name, value, low=0.0, high=math.inf, low_open=True, high_open=True
        )
    ),
    "accumulation_steps": lambda name, value: _count(name, value, minimum=1),
    "label_smoothing": lambda name, value: _number(
        name, value, low=0.0, high=1.0, low_open=False, high_open=True
    ),
    "amp_dtype": _amp_dtype,
    "max_steps": _optional(lambda name, value: _count(name, value, minimum=1)),
}


def check_option(name: str, value: object) -> None:
    """Validate one [`TrainConfig`][vitlib.training.TrainConfig] setting by the rule the config
    itself applies.

    Raises:
        TrainingConfigError: ``value`` is out of range or unknown; the message names the
            setting, the value and what is expected.
    """
    _CHECKS[name](name, value)


@dataclass(frozen=True)
class TrainConfig:
    """How to optimise: optimiser, learning-rate schedule, clipping, accumulation, precision.

    Attributes:
        optimizer: ``"adamw"`` (decoupled weight decay, the default), ``"adam"`` (L2 penalty) or
            ``"sgd"`` (with momentum; the paper fine-tunes with it).
        lr: Peak learning rate, reached at the end of warmup.
        weight_decay: Applied only to weight matrices; norms, biases (every parameter with
            ``ndim <= 1``) and the names in ``model.no_weight_decay()`` are never decayed.
        betas: Adam betas; the paper uses (0.9, 0.999).
        momentum: SGD momentum (ignored by Adam).
        schedule: Per-step decay after warmup: ``"cosine"``, ``"linear"`` or ``"constant"``.
        warmup_steps: Optimiser steps of linear warmup from ~0 to ``lr``.
        min_lr_ratio: The decay ends at ``lr * min_lr_ratio``.
        grad_clip_norm: Global L2 norm to clip gradients to; ``None`` disables clipping.
        accumulation_steps: Micro-batches per optimiser step; the result equals one batch that many
            times larger.
        label_smoothing: Cross-entropy label smoothing for the training loss (evaluation never
            smooths).
        amp_dtype: ``torch.bfloat16`` to train and evaluate under autocast, or ``None`` for full
            precision.
        max_steps: Stop after this many optimiser steps in total (``None``: run every epoch to the
            end).
    """

    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip_norm: float | None = 1.0
    accumulation_steps: int = 1
    label_smoothing: float = 0.0
    amp_dtype: torch.dtype | None = None
    max_steps: int | None = None

    def __post_init__(self) -> None:
        for field in fields(self):
            check_option(field.name, getattr(self, field.name))
        object.__setattr__(self, "betas", (float(self.betas[0]), float(self.betas[1])))

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-friendly values (``amp_dtype`` as ``"bfloat16"`` or ``None``)."""
        data = asdict(self)
        data["betas"] = list(self.betas)
        data["amp_dtype"] = (
            None if self.amp_dtype is None else str(self.amp_dtype).removeprefix("torch.")
        )
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Rebuild a config from `to_dict` output; unknown keys raise ``TypeError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            hint = did_you_mean(unknown[0], sorted(known))
            raise TypeError(
                f"unknown TrainConfig field(s) {unknown}{hint}; expected some of {sorted(known)}."
            )
        values = dict(data)
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        if isinstance(values.get("amp_dtype"), str):
            name = values["amp_dtype"]
            if name not in AMP_DTYPES:
                raise TrainingConfigError(
                    f"amp_dtype={name!r} is not supported; expected one of {sorted(AMP_DTYPES)} "
                    "or None."
                )
            values["amp_dtype"] = AMP_DTYPES[name]
        return cls(**values)
