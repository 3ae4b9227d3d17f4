"""Where a model runs: one rule for training, prediction and evaluation."""

from __future__ import annotations

import torch
from torch import nn


def resolve_device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    """``device`` as a ``torch.device``, defaulting to where the model's parameters live."""
    if device is not None:
        return torch.device(device)
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")
