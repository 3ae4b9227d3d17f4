"""Run directory: last/, best/, history.json: atomic saves, exact resume, no silent overwrite."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from torch import nn

import vitlib
from tests.training_helpers import (
    RECIPE,
    SimulatedCrashError,
    count_optimizer_steps,
    digits_vit,
    interrupt_after,
    loaders,
    states_equal,
    tiny_net,
    train,
)
from vitlib.data import DigitsDataset, make_dataloaders
from vitlib.training import (
    History,
    NoRunToResumeError,
    RunExistsError,
    TrainConfig,
    TrainingConfigError,
    fit,
)
from vitlib.training import loop as training_loop
from vitlib.training.engine import EvalResult


def test_the_run_directory_holds_last_best_and_history(tmp_path: Path) -> None:
    model, history = train(epochs=3, output_dir=tmp_path / "run")
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["best", "history.json", "last"]
    assert sorted(p.name for p in (run / "last").iterdir()) == [
        "model.safetensors",
        "training_state.pt",
    ]
    assert json.loads((run / "history.json").read_text()) == history.as_dict()
    saved = safetensors.torch.load_file(run / "last" / "model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    state = torch.load(run / "last" / "training_state.pt", weights_only=True)
    assert state["epoch"] == 3
    assert state["global_step"] == 15  # 40 samples in batches of 8, three epochs
    assert state["history"] == history.as_dict()
    assert state["best_accuracy"] == max(history.val_acc)
    assert TrainConfig.from_dict(state["train_config"]) == TrainConfig(**RECIPE)


def test_best_holds_the_weights_of_the_best_validation_accuracy(tmp_path: Path) -> None:
    snapshots: list[dict[str, torch.Tensor]] = []
    model = tiny_net(dropout=0.2)
    train_loader, test_loader = loaders(train_samples=16, batch_size=4)

    def snapshot(epoch: int, history: History) -> None:
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})

    history = fit(
        model,
        train_loader,
        test_loader,
        epochs=4,
        lr=0.5,
        output_dir=tmp_path,
        on_epoch_end=snapshot,
        progress=False,
    )
    best_epoch = history.best_epoch() - 1
    best = safetensors.torch.load_file(tmp_path / "best" / "model.safetensors")
    assert all(torch.equal(best[k], v) for k, v in snapshots[best_epoch].items())


def test_best_keeps_an_earlier_epoch_when_later_ones_are_worse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The best epoch is the first: best/ must keep its weights while last/ moves on."""
    accuracies = iter([0.9, 0.5, 0.4])

    def scored(*args: Any, **kwargs: Any) -> EvalResult:
        return EvalResult(loss=1.0, accuracy=next(accuracies), samples=8)

    monkeypatch.setattr(training_loop, "evaluate", scored)
    snapshots: list[dict[str, torch.Tensor]] = []
    model = tiny_net()
    train_loader, test_loader = loaders(train_samples=16, batch_size=4)

    def snapshot(epoch: int, history: History) -> None:
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})

    history = fit(
        model, train_loader, test_loader, epochs=3, lr=0.5, output_dir=tmp_path,
        on_epoch_end=snapshot, progress=False,
    )  # fmt: skip
    assert history.best_epoch() == 1
    best = safetensors.torch.load_file(tmp_path / "best" / "model.safetensors")
    last = safetensors.torch.load_file(tmp_path / "last" / "model.safetensors")
    assert all(torch.equal(best[k], v) for k, v in snapshots[0].items())
    assert all(torch.equal(last[k], v) for k, v in snapshots[2].items())
    assert not all(torch.equal(best[k], last[k]) for k in best)


def test_best_breaks_accuracy_ties_by_the_lower_validation_loss(tmp_path: Path) -> None:
    """Separable blobs: every epoch reaches the same accuracy, and the loss keeps falling."""
    snapshots: list[dict[str, torch.Tensor]] = []
    model = tiny_net()
    train_loader, test_loader = loaders()

    def snapshot(epoch: int, history: History) -> None:
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})

    history = fit(
        model, train_loader, test_loader, epochs=4, lr=0.05, output_dir=tmp_path,
        on_epoch_end=snapshot, progress=False,
    )  # fmt: skip
    tied = [epoch for epoch, acc in enumerate(history.val_acc) if acc == max(history.val_acc)]
    assert len(tied) > 1, f"the run was meant to tie: {history.val_acc}"
    expected = min(tied, key=lambda epoch: history.val_loss[epoch])
    assert expected != tied[0], f"the loss was meant to fall: {history.val_loss}"
    best = safetensors.torch.load_file(tmp_path / "best" / "model.safetensors")
    assert all(torch.equal(best[k], v) for k, v in snapshots[expected].items())


def test_best_epoch_ranks_accuracy_then_loss_then_the_earlier_epoch() -> None:
    history = History()
    for acc, loss in [(0.5, 1.0), (0.9, 0.8), (0.9, 0.6), (0.9, 0.6), (0.7, 0.1)]:
        history.append(train_loss=1.0, train_acc=0.5, val_loss=loss, val_acc=acc, lr=0.1)
    assert history.best_epoch() == 3
    with pytest.raises(ValueError, match="empty"):
        History().best_epoch()


def test_resuming_an_interrupted_run_reaches_the_same_weights(tmp_path: Path) -> None:
    uninterrupted, full_history = train(epochs=3)
    with pytest.raises(SimulatedCrashError):
        train(epochs=3, output_dir=tmp_path, on_epoch_end=interrupt_after(1))
    model = tiny_net(seed=123, dropout=0.2)  # weights come from last/, not from this init
    train_loader, test_loader = loaders(seed=0)
    history = fit(
        model,
        train_loader,
        test_loader,
        epochs=3,
        output_dir=tmp_path,
        resume=True,
        progress=False,
        **RECIPE,
    )
    assert states_equal(model, uninterrupted)
    assert history == full_history


def test_resuming_with_digits_augmentation_and_bf16_is_exact(tmp_path: Path) -> None:
    def run(epochs: int, **options: Any) -> tuple[nn.Module, History]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(64, 10))
        train_set = DigitsDataset("train", image_size=8, augment=True)
        train_loader, test_loader = make_dataloaders(
            torch.utils.data.Subset(train_set, range(96)),
            torch.utils.data.Subset(DigitsDataset("test", image_size=8), range(64)),
            32,
        )
        history = fit(
            model,
            train_loader,
            test_loader,
            epochs=epochs,
            amp_dtype=torch.bfloat16,
            warmup_steps=2,
            progress=False,
            **options,
        )
        return model, history

    straight, straight_history = run(3)
    with pytest.raises(SimulatedCrashError):
        run(3, output_dir=tmp_path, on_epoch_end=interrupt_after(2))
    resumed, resumed_history = run(3, output_dir=tmp_path, resume=True)
    assert states_equal(straight, resumed)
    assert straight_history == resumed_history


def test_a_directory_holding_a_run_is_never_overwritten_silently(tmp_path: Path) -> None:
    train(epochs=1, output_dir=tmp_path)
    before = (tmp_path / "last" / "model.safetensors").read_bytes()
    with pytest.raises(RunExistsError, match="resume=True") as caught:
        train(epochs=1, output_dir=tmp_path)
    message = str(caught.value)
    assert str(tmp_path) in message
    assert "overwrite=True" in message
    assert isinstance(caught.value, FileExistsError)
    assert (tmp_path / "last" / "model.safetensors").read_bytes() == before


def test_overwrite_replaces_the_run_but_keeps_other_files(tmp_path: Path) -> None:
    train(epochs=2, output_dir=tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    _, history = train(epochs=1, seed=5, output_dir=tmp_path, overwrite=True)
    assert json.loads((tmp_path / "history.json").read_text()) == history.as_dict()
    assert torch.load(tmp_path / "last" / "training_state.pt", weights_only=True)["epoch"] == 1
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_resume_continues_a_finished_run_to_more_epochs(tmp_path: Path) -> None:
    _, first = train(epochs=2, output_dir=tmp_path)
    _, extended = train(epochs=3, output_dir=tmp_path, resume=True)
    assert len(extended) == 3
    assert extended.val_acc[:2] == first.val_acc


def _run_files(run: Path) -> dict[str, bytes]:
    return {str(path.relative_to(run)): path.read_bytes() for path in run.rglob("*.*")}


def test_resume_for_fewer_epochs_than_the_run_has_is_refused_and_changes_nothing(
    tmp_path: Path,
) -> None:
    train(epochs=3, output_dir=tmp_path)
    before = _run_files(tmp_path)
    with pytest.raises(TrainingConfigError) as refused:
        train(epochs=2, output_dir=tmp_path, resume=True)
    message = str(refused.value)
    assert f"epochs=2 (--epochs 2), but the run in {tmp_path} already has 3 epochs" in message
    assert "a run cannot be shortened, and nothing was changed" in message
    assert "Pass epochs=3 or more (vitlib train --resume --epochs N)" in message
    assert _run_files(tmp_path) == before


def test_resuming_a_complete_run_says_so_trains_nothing_and_returns_its_history(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recipe = {**RECIPE, "warmup_steps": 100}  # more than half of the run: a warning each build

    def run(**options: Any) -> tuple[nn.Module, History]:
        model = tiny_net(dropout=0.2)
        train_loader, test_loader = loaders()
        history = fit(
            model, train_loader, test_loader, epochs=2, output_dir=tmp_path, **recipe, **options
        )
        return model, history

    _, history = run(progress=False)
    assert any("more than half" in record.getMessage() for record in caplog.records)
    caplog.clear()
    before = _run_files(tmp_path)
    with count_optimizer_steps() as counted, caplog.at_level(logging.INFO, "vitlib.training"):
        model, again = run(resume=True)
    assert again == history
    assert counted.steps == 0
    assert _run_files(tmp_path) == before
    saved = safetensors.torch.load_file(tmp_path / "last" / "model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    messages = [record.getMessage() for record in caplog.records]
    complete = [m for m in messages if "is already complete" in m]
    assert complete == [
        f"resume=True: the run in {tmp_path} is already complete: it has its 2 epochs "
        "(epochs=2); nothing was trained. To train it further, resume it with more epochs "
        "(e.g. epochs=3; vitlib train --resume --epochs 3)."
    ]
    assert caplog.records[-1].levelno == logging.WARNING
    assert not any("more than half" in m for m in messages), "no schedule for a run not trained"


def test_max_steps_on_resume_is_a_length_like_epochs(tmp_path: Path) -> None:
    """A run stopped by max_steps is complete for the same max_steps, extended by a larger one,
    and refused for a smaller one."""
    with count_optimizer_steps() as counted:
        train(epochs=5, max_steps=7, output_dir=tmp_path)  # 5 steps per epoch: 2 epochs
        _, history = train(epochs=5, max_steps=7, output_dir=tmp_path, resume=True)
    assert (counted.steps, len(history)) == (7, 2)
    with pytest.raises(TrainingConfigError, match=r"max_steps=6 \(--max-steps 6\), but the run"):
        train(epochs=5, max_steps=6, output_dir=tmp_path, resume=True)
    _, longer = train(epochs=5, max_steps=12, output_dir=tmp_path, resume=True)
    assert len(longer) == 3


def test_resume_without_a_saved_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NoRunToResumeError, match="drop resume=True"):
        train(output_dir=tmp_path / "nothing", resume=True)
    with pytest.raises(TrainingConfigError, match="output_dir"):
        train(resume=True)


def test_resume_and_overwrite_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TrainingConfigError, match="contradict"):
        train(output_dir=tmp_path, resume=True, overwrite=True)


def test_resume_with_different_options_is_refused(tmp_path: Path) -> None:
    train(epochs=1, output_dir=tmp_path)
    model = tiny_net()
    train_loader, test_loader = loaders()
    options: dict[str, Any] = {**RECIPE, "lr": 1.0}
    with pytest.raises(TrainingConfigError, match=r"\(lr: saved 0.05, given 1.0\)"):
        fit(model, train_loader, test_loader, epochs=2, output_dir=tmp_path, resume=True, **options)


def test_an_interrupted_save_leaves_the_previous_checkpoint_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train(epochs=1, output_dir=tmp_path)
    before = {p.name: p.read_bytes() for p in (tmp_path / "last").iterdir()}

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        train(epochs=2, output_dir=tmp_path, resume=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "last").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "history.json", "last"]


def test_a_save_interrupted_while_moving_files_is_completed_on_resume(tmp_path: Path) -> None:
    train(epochs=1, output_dir=tmp_path)
    last = tmp_path / "last"
    committed = last / ".vitlib-save-complete"  # the new files were whole, one not yet moved
    committed.mkdir()
    (last / "training_state.pt").rename(committed / "training_state.pt")
    (last / ".vitlib-save-partial").mkdir()  # and a later save was cut off early
    _, history = train(epochs=2, output_dir=tmp_path, resume=True)
    assert len(history) == 2
    assert sorted(p.name for p in last.iterdir()) == ["model.safetensors", "training_state.pt"]


def test_a_vit_run_saves_loadable_pretrained_directories(tmp_path: Path) -> None:
    def run(**options: Any) -> tuple[vitlib.ViT, History]:
        torch.manual_seed(0)
        model = vitlib.create_model(
            "ViT-Ti/4",
            img_size=8,
            in_channels=1,
            num_classes=10,
            num_transformer_layers=1,
            embedding_dim=24,
            mlp_size=48,
            num_heads=2,
        )
        train_loader, test_loader = make_dataloaders(
            torch.utils.data.Subset(DigitsDataset("train", image_size=8), range(48)),
            torch.utils.data.Subset(DigitsDataset("test", image_size=8), range(16)),
            16,
        )
        history = fit(model, train_loader, test_loader, epochs=2, progress=False, **options)
        return model, history

    straight, _ = run()
    with pytest.raises(SimulatedCrashError):
        run(output_dir=tmp_path, on_epoch_end=interrupt_after(1))
    assert sorted(p.name for p in (tmp_path / "last").iterdir()) == [
        "config.json",
        "model.safetensors",
        "training_state.pt",
    ]
    assert vitlib.load_pretrained(tmp_path / "best").config == straight.config
    resumed, _ = run(output_dir=tmp_path, resume=True)
    assert states_equal(straight, resumed)
    assert states_equal(vitlib.load_pretrained(tmp_path / "last"), straight)


def test_saved_entries_get_the_usual_permissions(tmp_path: Path) -> None:
    train(epochs=1, output_dir=tmp_path)
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "last").stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((tmp_path / "history.json").stat().st_mode) == 0o666 & ~mask


class _Payload:
    """A pickle that would create ``marker`` if a loader ever ran its code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return Path.touch, (self.marker,)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_truncate, "is corrupt or truncated"),
        (lambda path: path.write_bytes(b""), "is empty"),
        (lambda path: torch.save(_Payload(path.parent / "marker"), path), "was refused"),
        (lambda path: torch.save([1, 2], path), "holds a list; expected the dict"),
    ],
    ids=["truncated", "empty", "code", "not-a-dict"],
)
def test_a_damaged_training_state_is_named_with_what_to_do(
    tmp_path: Path, damage: Any, problem: str
) -> None:
    train(epochs=1, output_dir=tmp_path)
    state = tmp_path / "last" / "training_state.pt"
    damage(state)
    with pytest.raises(vitlib.CheckpointError) as caught:
        train(epochs=2, output_dir=tmp_path, resume=True)
    message = str(caught.value)
    assert f"{state} {problem}" in message
    assert f"the run in {tmp_path} cannot be resumed" in message
    assert "overwrite=True" in message
    assert str(tmp_path / "best") in message
    assert "weights_only=False" not in message
    assert not (tmp_path / "last" / "marker").exists()
    if problem == "was refused":  # torch's advice to load with weights_only=False stays hidden
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__


def test_loading_a_missing_training_state_names_it(tmp_path: Path) -> None:
    from vitlib.training.resume import load_training_state  # fit refuses earlier: no run

    with pytest.raises(vitlib.CheckpointError, match=r"training_state.pt is missing; the run"):
        load_training_state(tmp_path / "last")


def test_resuming_a_vit_run_without_its_config_names_the_missing_file(tmp_path: Path) -> None:
    def run(**options: Any) -> History:
        model = digits_vit()
        train_loader, test_loader = make_dataloaders(
            torch.utils.data.Subset(DigitsDataset("train", image_size=8), range(16)),
            torch.utils.data.Subset(DigitsDataset("test", image_size=8), range(8)),
            8,
        )
        return fit(model, train_loader, test_loader, epochs=2, progress=False, **options)

    with pytest.raises(SimulatedCrashError):
        run(output_dir=tmp_path, on_epoch_end=interrupt_after(1))
    (tmp_path / "last" / "config.json").unlink()
    with pytest.raises(vitlib.CheckpointError) as caught:
        run(output_dir=tmp_path, resume=True)
    message = str(caught.value)
    assert message.startswith(
        f"{tmp_path / 'last' / 'config.json'} is missing; the run in {tmp_path} cannot be resumed"
    )
    assert "num_heads" not in message  # fit() has no way to pass it


@pytest.mark.parametrize(
    ("damage", "error", "text"),
    [
        (lambda path: path.unlink(), vitlib.CheckpointError, "model.safetensors is missing"),
        (_truncate, vitlib.CheckpointError, "model.safetensors is corrupt or truncated"),
    ],
    ids=["missing", "truncated"],
)
def test_damaged_weights_of_a_plain_module_are_named(
    tmp_path: Path, damage: Any, error: type[Exception], text: str
) -> None:
    train(epochs=1, output_dir=tmp_path)
    damage(tmp_path / "last" / "model.safetensors")
    with pytest.raises(error, match=text) as caught:
        train(epochs=2, output_dir=tmp_path, resume=True)
    assert "overwrite=True" in str(caught.value)


def test_resuming_with_another_plain_module_is_refused(tmp_path: Path) -> None:
    train(epochs=1, output_dir=tmp_path)
    other = nn.Sequential(nn.Linear(8, 3))
    train_loader, test_loader = loaders()
    with pytest.raises(TrainingConfigError, match=r"(?s)do not fit the model given.*Missing key"):
        fit(
            other,
            train_loader,
            test_loader,
            epochs=2,
            output_dir=tmp_path,
            resume=True,
            progress=False,
            **RECIPE,
        )
