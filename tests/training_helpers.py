"""Small models and data sets shared by the training tests.

Not a ``test_*`` module, so pytest collects nothing here; import it as
``from tests.training_helpers import ...``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.data import DataLoader, TensorDataset

from vitlib import ViT
from vitlib.training import History, fit
from vitlib.training.resume import load_training_state

FEATURES = 8
CLASSES = 3
#: What a finished ``vitlib train`` run folder holds (with matplotlib installed).
FINISHED_COMMAND_RUN: list[str] = [
    "best",
    "history.json",
    "history.png",
    "last",
    "predictions.png",
    "settings.json",
]

RECIPE: dict[str, Any] = {
    "lr": 0.05,
    "warmup_steps": 3,
    "weight_decay": 0.01,
    "label_smoothing": 0.1,
}


class TinyNet(nn.Module):
    """A two-layer classifier with a norm, biases and an optional dropout; fast, deterministic."""

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.hidden = nn.Linear(FEATURES, 16)
        self.norm = nn.LayerNorm(16)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(16, CLASSES)

    def forward(self, inputs: Tensor) -> Tensor:
        logits: Tensor = self.head(self.dropout(torch.relu(self.norm(self.hidden(inputs)))))
        return logits


class TokenNet(TinyNet):
    """TinyNet plus a 3-d learnable token that ``no_weight_decay`` names, like ViT's class token."""

    def __init__(self) -> None:
        super().__init__()
        self.class_embedding = nn.Parameter(torch.zeros(1, 1, FEATURES))

    def forward(self, inputs: Tensor) -> Tensor:
        return super().forward(inputs + self.class_embedding[0, 0])

    def no_weight_decay(self) -> set[str]:
        return {"class_embedding"}


def blobs(samples: int, seed: int = 0) -> TensorDataset:
    """Three separable Gaussian blobs in 8 dimensions (fixed centres; ``seed`` draws the points)."""
    centres = torch.randn(CLASSES, FEATURES, generator=torch.Generator().manual_seed(0)) * 2
    labels = torch.arange(samples) % CLASSES
    noise = torch.randn(samples, FEATURES, generator=torch.Generator().manual_seed(seed))
    inputs = centres[labels] + noise
    return TensorDataset(inputs, labels)


def loaders(
    train_samples: int = 40, test_samples: int = 15, batch_size: int = 8, seed: int = 0
) -> tuple[DataLoader[tuple[Tensor, ...]], DataLoader[tuple[Tensor, ...]]]:
    """A shuffled (seeded) train loader and an ordered test loader over blobs."""
    train = DataLoader(
        blobs(train_samples, seed),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    test = DataLoader(blobs(test_samples, seed + 1), batch_size=batch_size)
    return train, test


def tiny_net(seed: int = 0, dropout: float = 0.0) -> TinyNet:
    """A TinyNet initialised from ``seed``."""
    torch.manual_seed(seed)
    return TinyNet(dropout)


def states_equal(first: nn.Module, second: nn.Module) -> bool:
    """Whether two models hold bit-identical state dicts."""
    left, right = first.state_dict(), second.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


class SimulatedCrashError(Exception):
    """Stands in for a crash or Ctrl-C after an epoch was saved."""


def interrupt_after(epoch: int) -> Callable[[int, History], None]:
    """An ``on_epoch_end`` callback that crashes once ``epoch`` is saved."""

    def callback(done: int, history: History) -> None:
        if done == epoch:
            raise SimulatedCrashError

    return callback


def train(seed: int = 0, epochs: int = 2, **options: Any) -> tuple[nn.Module, History]:
    """Fit a dropout TinyNet on blobs with RECIPE; ``options`` go to ``fit``."""
    model = tiny_net(seed=seed, dropout=0.2)
    train_loader, test_loader = loaders(seed=seed)
    history = fit(
        model,
        train_loader,
        test_loader,
        epochs=epochs,
        seed=seed,
        progress=False,
        **RECIPE,
        **options,
    )
    return model, history


def digits_vit(num_classes: int = 10, seed: int = 0) -> ViT:
    """A one-layer ViT for 8x8 one-channel digits (4 patches), initialised from ``seed``."""
    torch.manual_seed(seed)
    return ViT(
        img_size=8,
        in_channels=1,
        patch_size=4,
        num_transformer_layers=1,
        embedding_dim=16,
        mlp_size=32,
        num_heads=2,
        num_classes=num_classes,
    )


def digits_loaders(
    train_samples: int = 32, test_samples: int = 16, batch_size: int = 16
) -> tuple[DataLoader[Any], DataLoader[Any]]:
    """Loaders over the first digits of the train and test splits, at 8x8 (labels 0..9)."""
    from torch.utils.data import Subset

    from vitlib.data import DigitsDataset, make_dataloaders

    return make_dataloaders(
        Subset(DigitsDataset("train", image_size=8), range(train_samples)),
        Subset(DigitsDataset("test", image_size=8), range(test_samples)),
        batch_size,
    )


class StepCounter:
    """How many optimiser steps ran; see :func:`count_optimizer_steps`."""

    def __init__(self) -> None:
        self.steps = 0


@contextmanager
def count_optimizer_steps() -> Iterator[StepCounter]:
    """Count the ``step()`` calls of every optimiser inside the block, ``fit``'s own included."""
    counter = StepCounter()

    def hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        counter.steps += 1

    handle = register_optimizer_step_post_hook(hook)
    try:
        yield counter
    finally:
        handle.remove()


@contextmanager
def output_dtypes(module: nn.Module) -> Iterator[list[torch.dtype]]:
    """The dtype of every output ``module`` produced inside the block (autocast shows here)."""
    dtypes: list[torch.dtype] = []

    def hook(module: nn.Module, inputs: Any, output: Tensor) -> None:
        dtypes.append(output.dtype)

    handle = module.register_forward_hook(hook)
    try:
        yield dtypes
    finally:
        handle.remove()


def as_earlier_vitlib_history(run_dir: Path) -> None:
    """Rewrite the history in ``run_dir/last`` as a vitlib before the validation split saved it:
    ``test_loss`` and ``test_acc``, measured on the loader that chose ``best/``."""
    path = run_dir / "last" / "training_state.pt"
    state = load_training_state(run_dir / "last")
    curves = state["history"]
    state["history"] = {
        "train_loss": curves["train_loss"],
        "train_acc": curves["train_acc"],
        "test_loss": curves["val_loss"],
        "test_acc": curves["val_acc"],
        "lr": curves["lr"],
    }
    torch.save(state, path)
