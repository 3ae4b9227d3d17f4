"""The engine learns: a tiny ViT reaches >= 90% on the digits test set in a few hundred steps."""

from __future__ import annotations

import pytest

import vitlib
from vitlib.data import DigitsDataset, make_dataloaders
from vitlib.training import fit, seed_everything


@pytest.mark.slow
def test_a_tiny_vit_learns_the_digits() -> None:
    train_loader, test_loader = make_dataloaders(
        DigitsDataset("train", image_size=16), DigitsDataset("test", image_size=16), 64
    )
    seed_everything(0)
    model = vitlib.ViT(
        img_size=16,
        in_channels=1,
        patch_size=4,
        num_transformer_layers=2,
        embedding_dim=64,
        mlp_size=128,
        num_heads=2,
        mlp_dropout=0.0,
        embedding_dropout=0.0,
        num_classes=10,
    )
    model.reset_parameters(position_std=1.0)  # the recipe's init: positions visible from step 0
    history = fit(
        model,
        train_loader,
        test_loader,
        epochs=10,  # 23 steps per epoch: 230 steps
        lr=3e-3,
        warmup_steps=20,
        weight_decay=0.05,
        progress=False,
    )
    assert history.val_acc[-1] >= 0.90, history.val_acc
    assert history.train_loss[-1] < history.train_loss[0] / 4
