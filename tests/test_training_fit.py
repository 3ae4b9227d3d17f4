"""fit: reproducible runs, the history, and the errors of its options."""

from __future__ import annotations

from typing import Any

import pytest
from torch.utils.data import DataLoader

from tests.test_training_support import blobs, loaders, states_equal, tiny_net, train
from vitlib.data import make_dataloaders
from vitlib.training import TrainingConfigError, fit


def test_the_same_seed_gives_identical_weights_and_history() -> None:
    first, first_history = train(seed=1)
    again, again_history = train(seed=1)
    other, _ = train(seed=2)
    assert states_equal(first, again)
    assert first_history == again_history
    assert not states_equal(first, other)


def test_the_history_has_one_entry_per_epoch_and_learns() -> None:
    _, history = train(epochs=4)
    assert len(history) == 4
    assert set(history.as_dict()) == {"train_loss", "train_acc", "test_loss", "test_acc", "lr"}
    assert history.test_loss[-1] < history.test_loss[0]
    assert history.test_acc[-1] >= 0.9


@pytest.mark.parametrize("epochs", [0, -1, 1.5, True])
def test_bad_epochs_are_refused(epochs: Any) -> None:
    with pytest.raises(TrainingConfigError, match=rf"epochs={epochs!r}.*integer >= 1"):
        train(epochs=epochs)


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan")])
def test_bad_learning_rates_are_refused(lr: float) -> None:
    model = tiny_net()
    train_loader, test_loader = loaders()
    with pytest.raises(TrainingConfigError, match=r"lr=.*finite number in \(0, inf\)"):
        fit(model, train_loader, test_loader, epochs=1, lr=lr)


def test_unknown_options_are_refused_with_a_suggestion() -> None:
    model = tiny_net()
    train_loader, test_loader = loaders()
    with pytest.raises(TypeError, match="did you mean 'warmup_steps'"):
        fit(model, train_loader, test_loader, epochs=1, warmup=10)


def test_unknown_optimizer_and_schedule_names_are_refused_via_fit() -> None:
    model = tiny_net()
    train_loader, test_loader = loaders()
    with pytest.raises(TrainingConfigError, match="did you mean 'sgd'"):
        fit(model, train_loader, test_loader, epochs=1, optimizer="sgdd")
    with pytest.raises(TrainingConfigError, match="did you mean 'linear'"):
        fit(model, train_loader, test_loader, epochs=1, schedule="liner")


def test_a_batch_larger_than_the_data_set_is_refused() -> None:
    with pytest.raises(ValueError, match="batch_size must be between 1 and the 40 samples"):
        make_dataloaders(blobs(40), blobs(10), 64)
    model = tiny_net()
    dropped = DataLoader(blobs(40), batch_size=64, drop_last=True)
    with pytest.raises(ValueError, match=r"0 batches per epoch \(batch_size=64"):
        fit(model, dropped, DataLoader(blobs(10)), epochs=1)


def test_max_steps_stops_early() -> None:
    model = tiny_net()
    train_loader, test_loader = loaders()
    history = fit(model, train_loader, test_loader, epochs=5, max_steps=7, progress=False)
    assert len(history) == 2  # five steps in the first epoch, two in the second


def test_accumulation_steps_through_fit() -> None:
    with pytest.raises(TrainingConfigError, match="accumulation_steps=0"):
        train(accumulation_steps=0)
    _, history = train(epochs=1, accumulation_steps=2)
    assert len(history) == 1
