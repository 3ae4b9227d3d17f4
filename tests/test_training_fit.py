"""fit: reproducible runs, the history, and the errors of its options."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import vitlib
from tests.training_helpers import (
    blobs,
    count_optimizer_steps,
    digits_loaders,
    digits_vit,
    loaders,
    output_dtypes,
    states_equal,
    tiny_net,
    train,
)
from vitlib.data import make_dataloaders
from vitlib.errors import CheckpointError, ConfigError, DataError, InputTypeError
from vitlib.training import TrainingConfigError, evaluate, fit, train_one_epoch
from vitlib.training.errors import NonFiniteEvalLossError


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
    assert set(history.as_dict()) == {
        *("train_loss", "train_acc", "val_loss", "val_acc", "lr"),
        *("val_name", "test"),
    }
    assert history.val_loss[-1] < history.val_loss[0]
    assert history.val_acc[-1] >= 0.9
    assert (history.val_name, history.test) == ("validation", None), "no test loader, no test"


@pytest.mark.parametrize("epochs", [0, -1, 1.5, True])
def test_bad_epochs_are_refused(epochs: Any) -> None:
    with pytest.raises(vitlib.VitlibError, match=rf"epochs must be an int >= 1, got {epochs!r}"):
        train(epochs=epochs)


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan")])
def test_bad_learning_rates_are_refused(lr: float) -> None:
    model = tiny_net()
    train_loader, test_loader = loaders()
    with pytest.raises(ConfigError, match=r"lr must be a finite number > 0, got"):
        fit(model, train_loader, test_loader, epochs=1, lr=lr)


def test_unknown_options_are_refused_with_a_suggestion() -> None:
    model = tiny_net()
    train_loader, test_loader = loaders()
    with pytest.raises(TypeError, match="did you mean 'warmup_steps'"):
        fit(model, train_loader, test_loader, epochs=1, warmup=10)


def test_unknown_optimizer_and_schedule_names_are_refused_via_fit() -> None:
    model = tiny_net()
    train_loader, test_loader = loaders()
    with pytest.raises(ConfigError, match="did you mean 'sgd'"):
        fit(model, train_loader, test_loader, epochs=1, optimizer="sgdd")
    with pytest.raises(ConfigError, match="did you mean 'linear'"):
        fit(model, train_loader, test_loader, epochs=1, schedule="liner")


def test_a_batch_larger_than_the_data_set_is_refused() -> None:
    with pytest.raises(ValueError, match="batch_size must be between 1 and the 40 samples"):
        make_dataloaders(blobs(40), blobs(10), 64)
    model = tiny_net()
    dropped = DataLoader(blobs(40), batch_size=64, drop_last=True)
    with pytest.raises(ValueError, match=r"0 batches per epoch \(batch_size=64"):
        fit(model, dropped, DataLoader(blobs(10)), epochs=1)


def test_max_steps_stops_early_even_in_the_middle_of_an_epoch(tmp_path: Path) -> None:
    model = tiny_net()
    train_loader, test_loader = loaders()  # 40 samples in batches of 8: 5 steps per epoch
    with count_optimizer_steps() as counted:
        history = fit(
            model,
            train_loader,
            test_loader,
            epochs=5,
            max_steps=7,
            output_dir=tmp_path,
            progress=False,
        )
    assert counted.steps == 7  # five in the first epoch, two in the second (not five)
    assert len(history) == 2
    assert (
        torch.load(tmp_path / "last" / "training_state.pt", weights_only=True)["global_step"] == 7
    )


def test_accumulation_steps_through_fit() -> None:
    with pytest.raises(ConfigError, match="accumulation_steps must be an int >= 1, got 0"):
        train(accumulation_steps=0)
    for accumulation_steps, steps in ((1, 5), (2, 3), (5, 1)):  # 5 micro-batches an epoch
        with count_optimizer_steps() as counted:
            _, history = train(epochs=1, accumulation_steps=accumulation_steps)
        assert counted.steps == steps, accumulation_steps
        assert len(history) == 1


def test_fit_runs_training_and_evaluation_under_bfloat16_autocast() -> None:
    model = tiny_net()
    train_loader, test_loader = loaders()  # 5 training and 2 test batches
    with output_dtypes(model.hidden) as dtypes:
        fit(model, train_loader, test_loader, epochs=1, amp_dtype=torch.bfloat16, progress=False)
    assert dtypes == [torch.bfloat16] * 7
    with output_dtypes(model.hidden) as dtypes:
        fit(model, train_loader, test_loader, epochs=1, progress=False)
    assert dtypes == [torch.float32] * 7


def test_labels_beyond_the_models_classes_are_refused_before_any_step(tmp_path: Path) -> None:
    model = digits_vit(num_classes=3)
    before = copy.deepcopy(model)
    train_loader, test_loader = digits_loaders()
    with pytest.raises(DataError) as caught:
        fit(model, train_loader, test_loader, epochs=1, output_dir=tmp_path, progress=False)
    message = str(caught.value)
    assert "the model outputs 3 classes but the training loader yielded label" in message
    assert "in batch 0 of epoch 1; expected int64 class indices in [0, 3)" in message
    assert "Build the model with num_classes=10 (the data set declares 10 classes)" in message
    assert states_equal(model, before)
    assert list(tmp_path.iterdir()) == []


def test_a_vit_without_a_head_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    train_loader, test_loader = digits_loaders()
    run = tmp_path / "run"
    with pytest.raises(TrainingConfigError, match=r"no classification head \(num_classes=0\)"):
        fit(digits_vit(num_classes=0), train_loader, test_loader, epochs=1, output_dir=run)
    assert not run.exists()


def test_a_non_finite_test_loss_stops_the_run_naming_the_epoch_and_batch(tmp_path: Path) -> None:
    inputs, labels = blobs(12, seed=1).tensors
    inputs = inputs.clone()
    inputs[5] = float("nan")  # the second test batch of four
    test_loader = DataLoader(TensorDataset(inputs, labels), batch_size=4)
    train_loader, _ = loaders()
    with pytest.raises(NonFiniteEvalLossError, match=r"evaluation batch 1 after epoch 1") as err:
        fit(tiny_net(), train_loader, test_loader, epochs=2, output_dir=tmp_path, progress=False)
    assert (err.value.epoch, err.value.batch_index) == (1, 1)
    assert not (tmp_path / "last").exists()  # the epoch was not saved as if it were fine


@pytest.mark.parametrize("role", ["val_loader", "test_loader"])
def test_an_empty_evaluation_loader_is_refused_before_training(tmp_path: Path, role: str) -> None:
    model = tiny_net()
    before = copy.deepcopy(model)
    train_loader, val_loader = loaders()
    empty = DataLoader(blobs(3), batch_size=4, drop_last=True)
    evaluated: dict[str, Any] = {"val_loader": val_loader, role: empty}
    with pytest.raises(DataError, match=rf"the {role} yields 0 batches \(batch_size=4, drop"):
        fit(model, train_loader, epochs=1, output_dir=tmp_path / "run", **evaluated)
    assert states_equal(model, before)
    assert not (tmp_path / "run").exists()


def _damaged_state(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> str:
    """Save a one-epoch run, apply ``change`` to its training state, resume; return the error."""
    train(epochs=1, output_dir=tmp_path)
    path = tmp_path / "last" / "training_state.pt"
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)
    with pytest.raises(CheckpointError) as caught:
        train(epochs=2, output_dir=tmp_path, resume=True)
    message = str(caught.value)
    assert message.startswith(str(path))
    return message


@pytest.mark.parametrize("entry", ["optimizer", "scheduler", "rng", "history", "format_version"])
def test_a_training_state_without_a_required_entry_names_it(tmp_path: Path, entry: str) -> None:
    message = _damaged_state(tmp_path, lambda state: state.pop(entry))
    assert f"is incomplete: it lacks the entry {entry!r}" in message
    assert f"the run in {tmp_path} cannot be resumed" in message
    assert "overwrite=True" in message


@pytest.mark.parametrize(
    ("change", "text"),
    [
        (lambda s: s.update(epoch="1"), "has a str as its 'epoch' entry; expected an int >= 1"),
        (lambda s: s.update(optimizer=[]), "has a list as its 'optimizer' entry"),
        (lambda s: s.update(best_accuracy=True), "has a bool as its 'best_accuracy' entry"),
        (lambda s: s["optimizer"].pop("param_groups"), "its 'optimizer' entry lacks"),
        (lambda s: s["rng"].pop("torch"), "its 'rng' entry lacks 'torch'"),
        (lambda s: s.update(global_step=-1), "says epoch 1, global step -1"),
        (lambda s: s["history"].pop("lr"), "has a malformed history (history is missing"),
        (lambda s: s.update(epoch=2), "has 1 epochs of history for epoch 2"),
        (lambda s: s.update(format_version=0), "has format_version 0; expected 1 to 1"),
        (
            lambda s: s["optimizer"]["param_groups"].pop(),
            "could not be restored (ValueError: ",
        ),
    ],
    ids=[
        "epoch-str",
        "optimizer-list",
        "accuracy-bool",
        "no-param-groups",
        "no-torch-rng",
        "negative-step",
        "history-keys",
        "history-length",
        "version-0",
        "optimizer-groups",
    ],
)
def test_a_training_state_with_malformed_entries_is_refused(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], text: str
) -> None:
    assert text in _damaged_state(tmp_path, change)


def test_a_training_state_from_a_newer_vitlib_is_refused(tmp_path: Path) -> None:
    message = _damaged_state(tmp_path, lambda state: state.update(format_version=99))
    assert "has format_version 99, written by a newer vitlib" in message
    assert "reads format_version 1. Upgrade vitlib" in message


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("grad_checkpointing", "yes", "a bool"),
        ("grad_checkpointing", "false", "a bool"),
        ("progress", 0, "a bool"),
        ("resume", "no", "a bool"),
        ("overwrite", 1, "a bool"),
        ("seed", 1.5, "an int >= 0 and <= 4294967295"),
        ("seed", True, "an int >= 0 and <= 4294967295"),
        ("parallel", None, "one of 'ddp', 'fsdp'"),
        ("device", 0, "a device such as 'cpu' or 'cuda', or None"),
        ("output_dir", 3, "a folder path or None"),
        ("on_epoch_end", "print", "a function called as on_epoch_end"),
    ],
)
def test_fit_options_of_the_wrong_type_are_refused_naming_them(
    tmp_path: Path, option: str, value: Any, expected: str
) -> None:
    """The shared checks, as for the model's setters: ``"false"`` is not False."""
    options = {"output_dir": tmp_path / "run", "progress": False, option: value}
    with pytest.raises(InputTypeError, match=rf"^{option} must be {re.escape(expected)}"):
        fit(tiny_net(), *loaders(), epochs=1, **options)
    assert not (tmp_path / "run").exists(), "refused before the run folder was touched"


@pytest.mark.parametrize(
    ("argument", "value", "expected"),
    [
        ("model", "vit", "a torch.nn.Module"),
        ("train_loader", [(torch.zeros(2, 8), torch.zeros(2))], "a torch DataLoader"),
        ("val_loader", 3, "a DataLoader (or another iterable)"),
        ("test_loader", 3, "a DataLoader (or another iterable)"),
        ("val_name", 3, "one of 'validation', 'test'"),
    ],
)
def test_fit_arguments_of_the_wrong_type_are_refused_naming_them(
    argument: str, value: Any, expected: str
) -> None:
    train_loader, val_loader = loaders()
    arguments: dict[str, Any] = {
        "model": tiny_net(),
        "train_loader": train_loader,
        "val_loader": val_loader,
        argument: value,
    }
    with pytest.raises(InputTypeError, match=rf"^{argument} must be {re.escape(expected)}"):
        fit(**arguments, epochs=1)


def test_a_negative_seed_is_out_of_range() -> None:
    with pytest.raises(ConfigError, match=r"seed must be an int >= 0 and <= 4294967295, got -1"):
        train(seed=-1, output_dir=None)


def _one_batch() -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.randn(2, 8), torch.tensor([0, 1]))]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda net: train_one_epoch(
                net,
                _one_batch(),
                torch.optim.SGD(net.parameters(), lr=0.1),
                progress="no",  # type: ignore[arg-type]
            ),
            r"^progress must be a bool",
        ),
        (
            lambda net: train_one_epoch(
                net, _one_batch(), torch.optim.SGD(net.parameters(), lr=0.1), epoch=0
            ),
            r"^epoch must be an int >= 1, got 0",
        ),
        (
            lambda net: train_one_epoch(
                net, _one_batch(), torch.optim.SGD(net.parameters(), lr=0.1), step_offset=-1
            ),
            r"^step_offset must be an int >= 0, got -1",
        ),
        (
            lambda net: evaluate(net, _one_batch(), progress=1),  # type: ignore[arg-type]
            r"^progress must be a bool",
        ),
        (
            lambda net: evaluate(net, _one_batch(), epoch="1"),  # type: ignore[arg-type]
            r"^epoch must be an int >= 1",
        ),
    ],
)
def test_the_engine_checks_its_own_arguments(
    call: Callable[[torch.nn.Module], object], message: str
) -> None:
    with pytest.raises(vitlib.VitlibError, match=message):
        call(tiny_net())


def test_freeze_backbone_refuses_more_blocks_than_the_model_has() -> None:
    from vitlib.training.finetune import freeze_backbone

    model = digits_vit()
    with pytest.raises(ConfigError, match=r"unfreeze_last must be an int >= 0 and <= 1, got 2"):
        freeze_backbone(model, 2)
    with pytest.raises(InputTypeError, match=r"unfreeze_last must be an int"):
        freeze_backbone(model, True)
    freeze_backbone(model, 1)
    assert all(p.requires_grad for p in model.transformer_encoder.parameters())
    assert not any(p.requires_grad for p in model.patch_embedding.parameters())


def test_the_seed_is_checked_on_resume_too(tmp_path: Path) -> None:
    """A resumed run restores its generators instead of seeding them; a bad seed is still a
    mistake to point out."""
    train(epochs=1, output_dir=tmp_path)
    train_loader, test_loader = loaders()
    with pytest.raises(InputTypeError, match=r"^seed must be an int >= 0 and <= 4294967295"):
        fit(
            tiny_net(),
            train_loader,
            test_loader,
            epochs=1,
            seed="0",  # type: ignore[arg-type]
            output_dir=tmp_path,
            resume=True,
        )
