"""fit's model selection: the best epoch is chosen on the validation loader, and the test loader
is evaluated once, at the end, with that epoch's weights."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from vitlib.errors import ConfigError
from vitlib.training import FinalTest, History, TrainingConfigError, evaluate, fit
from vitlib.training.resume import load_training_state

from .training_helpers import (
    RECIPE,
    SimulatedCrashError,
    as_earlier_vitlib_history,
    blobs,
    interrupt_after,
    loaders,
    states_equal,
    tiny_net,
)

EPOCHS = 4


def _misleading_val_loader() -> DataLoader[tuple[Tensor, ...]]:
    """Blobs labelled as their neighbours: learning makes the validation accuracy fall, so the
    best epoch is the first one, not the last."""
    inputs, labels = blobs(15, seed=5).tensors
    return DataLoader(TensorDataset(inputs, torch.roll(labels, 1)), batch_size=8)


class CountingLoader:
    """A loader that counts the passes over it."""

    def __init__(self, loader: DataLoader[tuple[Tensor, ...]]) -> None:
        self.loader = loader
        self.passes = 0

    def __iter__(self) -> Iterator[Any]:
        self.passes += 1
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)


def _fit(model: torch.nn.Module, **options: Any) -> History:
    train_loader, test_loader = loaders()
    options.setdefault("test_loader", test_loader)
    return fit(
        model,
        train_loader,
        _misleading_val_loader(),
        epochs=options.pop("epochs", EPOCHS),
        progress=False,
        **RECIPE,
        **options,
    )


def test_the_test_is_run_once_at_the_end_with_the_best_epochs_weights() -> None:
    model = tiny_net(dropout=0.2)
    test_loader = CountingLoader(loaders()[1])
    weights: dict[int, dict[str, Tensor]] = {}

    def keep(epoch: int, history: History) -> None:
        assert test_loader.passes == 0, "the test set is not looked at while training"
        weights[epoch] = copy.deepcopy(model.state_dict())

    history = _fit(model, test_loader=test_loader, on_epoch_end=keep)
    assert test_loader.passes == 1
    assert history.best_epoch() == 1 < len(history) == EPOCHS, "chosen on validation"
    best = tiny_net(dropout=0.2)
    best.load_state_dict(weights[1])
    expected = evaluate(best, loaders()[1])
    assert history.test == FinalTest(expected.loss, expected.accuracy, 1, 15)
    last = tiny_net(dropout=0.2)
    last.load_state_dict(weights[EPOCHS])
    assert states_equal(model, last), "the model ends with its last epoch's weights"


def test_without_a_test_loader_there_is_no_test() -> None:
    history = _fit(tiny_net(), test_loader=None, epochs=1)
    assert history.test is None
    assert history.as_dict()["test"] is None


def test_history_json_records_the_final_test(tmp_path: Path) -> None:
    history = _fit(tiny_net(), output_dir=tmp_path)
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved == history.as_dict()
    assert saved["test"]["epoch"] == 1
    assert saved["val_name"] == "validation"


def test_a_resumed_run_tests_the_best_epoch_saved_before_it_was_interrupted(
    tmp_path: Path,
) -> None:
    uninterrupted = _fit(tiny_net(dropout=0.2))
    with pytest.raises(SimulatedCrashError):
        _fit(tiny_net(dropout=0.2), output_dir=tmp_path, on_epoch_end=interrupt_after(2))
    resumed = _fit(tiny_net(dropout=0.2), output_dir=tmp_path, resume=True)
    assert resumed.best_epoch() == 1, "the best epoch was before the interruption"
    assert resumed == uninterrupted
    again = _fit(tiny_net(dropout=0.2), output_dir=tmp_path, resume=True)  # complete: tested
    assert again.test == uninterrupted.test


def test_a_run_of_an_earlier_vitlib_resumes_only_as_what_it_was(tmp_path: Path) -> None:
    """Its history says test_loss and test_acc, measured on the loader that chose best/."""
    _fit(tiny_net(), test_loader=None, output_dir=tmp_path, epochs=2)
    curves = load_training_state(tmp_path / "last")["history"]
    as_earlier_vitlib_history(tmp_path)
    model = tiny_net(seed=7)
    before = copy.deepcopy(model)
    with pytest.raises(TrainingConfigError, match=r"chose its best epochs on 'test' data") as err:
        _fit(model, test_loader=None, output_dir=tmp_path, epochs=3, resume=True)
    assert "Resume it with val_name='test'" in str(err.value)
    assert states_equal(model, before), "refused before anything was loaded into the model"
    history = _fit(
        tiny_net(), test_loader=None, output_dir=tmp_path, epochs=3, resume=True, val_name="test"
    )
    assert (len(history), history.val_name) == (3, "test")
    assert history.val_acc[:2] == curves["val_acc"]


def test_an_earlier_history_reads_as_chosen_on_test() -> None:
    earlier = {
        "train_loss": [1.0, 0.5],
        "train_acc": [0.5, 0.8],
        "test_loss": [0.9, 0.7],
        "test_acc": [0.6, 0.7],
        "lr": [0.1, 0.0],
    }
    history = History.from_dict(earlier)
    assert (history.val_loss, history.val_acc, history.val_name) == ([0.9, 0.7], [0.6, 0.7], "test")
    assert history.test is None
    assert History.from_dict(history.as_dict()) == history


def test_the_earlier_names_still_read_with_a_deprecation_warning() -> None:
    history = History()
    history.append(train_loss=1.0, train_acc=0.5, val_loss=0.9, val_acc=0.6, lr=0.1)
    with pytest.warns(DeprecationWarning, match=r"History.test_acc is now History.val_acc"):
        assert history.test_acc == [0.6]
    with pytest.warns(DeprecationWarning, match=r"History.test_loss is now History.val_loss"):
        assert history.test_loss == [0.9]


@pytest.mark.parametrize(
    "test", [{"loss": 0.5, "acc": 0.9}, [0.5, 0.9, 1, 10], {"loss": 0.5, "acc": 0.9, "x": 1}]
)
def test_a_malformed_test_entry_is_refused(test: Any) -> None:
    curves = {name: [0.5] for name in ("train_loss", "train_acc", "val_loss", "val_acc", "lr")}
    with pytest.raises(ValueError, match=r"history's test entry .* is malformed"):
        History.from_dict({**curves, "test": test})


def test_an_unknown_val_name_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"val_name must be one of 'validation', 'test'"):
        History(val_name="valid")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"val_name must be one of 'validation', 'test'"):
        _fit(tiny_net(), val_name="dev", epochs=1)
