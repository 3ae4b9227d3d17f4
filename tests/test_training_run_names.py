"""The folders the commands choose when not told: named after the data, numbered when taken,
claimed under the run's lock so that two commands never share one."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from vitlib.cli import main
from vitlib.training import run_names
from vitlib.training.run_lock import LOCK_FILE, hold_lock, run_lock
from vitlib.training.run_names import (
    claim_run_dir,
    data_name,
    default_run_dir,
    first_free,
    latest_numbered,
    numbered,
    taken,
)

QUICK = ["--layers", "1", "--epochs", "1", "--max-steps", "2", "--no-progress"]


def test_a_run_is_named_after_its_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_run_dir(None) == Path("runs/digits")
    assert default_run_dir(Path("data/sports_mini/")) == Path("runs/sports_mini")
    assert default_run_dir(Path("data/flowers"), "-finetune") == Path("runs/flowers-finetune")
    monkeypatch.chdir(tmp_path)
    assert data_name(Path(".")) == tmp_path.name


def test_numbered_folders_and_the_latest_of_them(tmp_path: Path) -> None:
    base = tmp_path / "runs" / "flowers"
    assert [numbered(base, n).name for n in (1, 2, 10)] == ["flowers", "flowers-2", "flowers-10"]
    assert latest_numbered(base) == base, "none yet: the base"
    for name in ("flowers", "flowers-2", "flowers-10", "flowers-x", "flowers-01", "flowersy"):
        (tmp_path / "runs" / name).mkdir(parents=True)
    assert latest_numbered(base) == tmp_path / "runs" / "flowers-10"


def test_a_folder_is_taken_when_it_holds_anything_but_a_lock(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    assert not taken(folder)
    folder.mkdir()
    (folder / LOCK_FILE).write_text("")
    assert not taken(folder)
    (folder / "notes.txt").write_text("mine")
    assert taken(folder)
    (tmp_path / "file").write_text("x")
    assert taken(tmp_path / "file"), "a file is no folder to write a run into"
    assert first_free(folder) == tmp_path / "run-2"


def test_a_claim_takes_the_first_free_folder_and_holds_its_lock(tmp_path: Path) -> None:
    base = tmp_path / "runs" / "digits"
    (base / "last").mkdir(parents=True)
    with claim_run_dir(base) as folder:
        assert folder == tmp_path / "runs" / "digits-2"
        assert (folder / LOCK_FILE).is_file()
    assert not folder.exists(), "left empty: removed with its lock"


def test_a_folder_locked_by_another_run_is_passed_over(tmp_path: Path) -> None:
    base = tmp_path / "runs" / "digits"
    held, release = threading.Event(), threading.Event()

    def other_command() -> None:
        with run_lock(base):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=other_command)
    thread.start()
    try:
        assert held.wait(30)
        with claim_run_dir(base) as folder:
            assert folder == tmp_path / "runs" / "digits-2"
    finally:
        release.set()
        thread.join()


def test_a_folder_filled_between_the_look_and_the_lock_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tmp_path / "runs" / "digits"
    real = hold_lock

    @contextmanager
    def filled_meanwhile(folder: Path, cli: bool) -> Iterator[None]:
        with real(folder, cli):
            if folder == base:  # another command wrote its run there just before
                (folder / "history.json").write_text("{}")
            yield

    monkeypatch.setattr(run_names, "hold_lock", filled_meanwhile)
    with claim_run_dir(base) as folder:
        assert folder == tmp_path / "runs" / "digits-2"
    assert (base / "history.json").read_text() == "{}", "the other run's file is left alone"


def test_train_without_output_dir_saves_into_runs_named_after_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["train", *QUICK]) == 0
    out = capsys.readouterr().out
    assert "run folder: runs/digits; --output-dir chooses another" in out
    assert "run saved in runs/digits; predict with: vitlib predict runs/digits IMAGE" in out
    assert main(["train", *QUICK]) == 0, "the second run of the README runs as written"
    assert "run folder: runs/digits-2 (runs/digits is taken)" in capsys.readouterr().out
    assert main(["train", *QUICK, "--resume", "--epochs", "2", "--max-steps", "4"]) == 0
    assert "resuming the latest run of digits: runs/digits-2" in capsys.readouterr().out
    assert sorted(path.name for path in (tmp_path / "runs").iterdir()) == ["digits", "digits-2"]
