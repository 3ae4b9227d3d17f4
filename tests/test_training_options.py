"""One validation of the training settings: functions that take a setting as a plain argument
refuse a bad value with exactly the error TrainConfig gives for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from vitlib import VitlibError
from vitlib.training import TrainConfig, lr_factor, train_one_epoch
from vitlib.training.engine import autocast


def _train(**options: Any) -> None:
    model = nn.Linear(4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = [(torch.randn(2, 4), torch.tensor([0, 1]))]
    train_one_epoch(model, batches, optimizer, progress=False, **options)


CASES = [
    ("accumulation_steps", 0, lambda: _train(accumulation_steps=0)),
    ("accumulation_steps", True, lambda: _train(accumulation_steps=True)),
    ("grad_clip_norm", -1.0, lambda: _train(grad_clip_norm=-1.0)),
    ("grad_clip_norm", float("nan"), lambda: _train(grad_clip_norm=float("nan"))),
    ("amp_dtype", torch.float16, lambda: _train(amp_dtype=torch.float16)),
    ("amp_dtype", torch.float16, lambda: autocast(torch.device("cpu"), torch.float16)),
    (
        "schedule",
        "cosin",
        lambda: lr_factor(0, warmup_steps=0, total_steps=10, schedule="cosin"),
    ),
]


@pytest.mark.parametrize(("name", "value", "call"), CASES)
def test_plain_arguments_follow_the_train_config_rule(
    name: str, value: Any, call: Callable[[], object]
) -> None:
    with pytest.raises(VitlibError) as from_config:
        TrainConfig(**{name: value})
    with pytest.raises(VitlibError) as from_call:
        call()
    assert str(from_call.value) == str(from_config.value)
    assert type(from_call.value) is type(from_config.value)
