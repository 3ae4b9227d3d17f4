"""The learnpytorch chapter's head swap (``model.head = nn.Linear(...)``): the config follows the
head, so a run trained after the swap saves, resumes and loads like any other."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import vitlib
from vitlib.training import fit

from .training_helpers import (
    SimulatedCrashError,
    digits_loaders,
    digits_vit,
    interrupt_after,
    states_equal,
)


def _swapped() -> vitlib.ViT:
    model = digits_vit(num_classes=3)  # "pretrained" for 3 classes
    torch.manual_seed(1)
    model.head = nn.Linear(model.config.num_features, 10)  # the digits have 10
    return model


def test_a_swapped_head_trains_resumes_and_loads(tmp_path: Path) -> None:
    straight = _swapped()
    fit(straight, *digits_loaders(), epochs=2, seed=0, progress=False)

    model = _swapped()
    assert model.config.num_classes == 10
    with pytest.raises(SimulatedCrashError):
        fit(model, *digits_loaders(), epochs=2, seed=0, output_dir=tmp_path,
            on_epoch_end=interrupt_after(1), progress=False)  # fmt: skip
    resumed = _swapped()
    fit(resumed, *digits_loaders(), epochs=2, output_dir=tmp_path, resume=True,
        progress=False)  # fmt: skip
    assert states_equal(resumed, straight)
    loaded = vitlib.load_pretrained(tmp_path / "last")
    assert loaded.config == resumed.config
    images = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(loaded(images), resumed.eval()(images))
