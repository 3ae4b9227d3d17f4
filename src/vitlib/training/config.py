"""`TrainConfig`: the optimisation recipe of a training run, validated once at construction.

The defaults follow the paper (Dosovitskiy et al., 2020, §4.1 and Appendix B.1); docs/training.md
sets them beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

import torch

from vitlib._checks import (
    check_choice,
    check_names,
    check_non_negative_int,
    check_number,
    check_positive_float,
    check_positive_int,
    check_sequence,
)
from vitlib.errors import ConfigError

OPTIMIZERS: Final[tuple[str, ...]] = ("adamw", "adam", "sgd")
SCHEDULES: Final[tuple[str, ...]] = ("cosine", "linear", "constant")
AMP_DTYPES: Final[Mapping[str, torch.dtype]] = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def _betas(name: str, value: object) -> tuple[float, float]:
    pair = check_sequence(name, value, "two numbers in [0, 1), e.g. (0.9, 0.999)")
    if len(pair) != 2:
        raise ConfigError(
            f"{name} must be two numbers in [0, 1), e.g. (0.9, 0.999), got {value!r}."
        )
    low, high = (
        check_number(f"each of {name}", beta, low=0.0, high=1.0, high_open=True) for beta in pair
    )
    return low, high


def _amp_dtype(name: str, value: object) -> None:
    if value not in (None, torch.bfloat16):
        raise ConfigError(
            f"{name} must be torch.bfloat16 or None, got {value!r} (float16 would need loss "
            "scaling, which bfloat16 does not)."
        )


def _optional(check: Callable[[str, object], object]) -> Callable[[str, object], object]:
    def checked(name: str, value: object) -> object:
        return None if value is None else check(name, value)

    return checked


def _rate(name: str, value: object) -> float:
    return check_number(name, value, low=0.0, high=1.0, high_open=True)


# The one validation of every training setting, by the shared checks: TrainConfig runs it on
# construction, and the functions that take a setting as a plain argument (train_one_epoch...)
# run it too.
_CHECKS: Final[dict[str, Callable[[str, object], object]]] = {
    "optimizer": lambda name, value: check_choice(name, value, OPTIMIZERS),
    "lr": check_positive_float,
    "weight_decay": lambda name, value: check_number(name, value, low=0.0),
    "betas": _betas,
    "momentum": _rate,
    "schedule": lambda name, value: check_choice(name, value, SCHEDULES),
    "warmup_steps": check_non_negative_int,
    "min_lr_ratio": lambda name, value: check_number(name, value, low=0.0, high=1.0),
    "grad_clip_norm": _optional(check_positive_float),
    "accumulation_steps": check_positive_int,
    "label_smoothing": _rate,
    "amp_dtype": _amp_dtype,
    "max_steps": _optional(check_positive_int),
}


def check_option(name: str, value: object) -> None:
    """Validate one [`TrainConfig`][vitlib.training.TrainConfig] setting by the rule the config
    itself applies.

    Raises:
        ConfigError: ``value`` is out of range or unknown.
        InputTypeError: ``value`` has the wrong type.
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
        object.__setattr__(self, "betas", _betas("betas", self.betas))

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
        check_names(
            data, [f.name for f in fields(cls)], "TrainConfig.from_dict", "TrainConfig field"
        )
        values = dict(data)
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        if isinstance(values.get("amp_dtype"), str):
            values["amp_dtype"] = AMP_DTYPES[
                check_choice("amp_dtype", values["amp_dtype"], list(AMP_DTYPES))
            ]
        return cls(**values)
