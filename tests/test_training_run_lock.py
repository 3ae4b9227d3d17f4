"""The run directory's lock: one run at a time in a folder, for the whole run; a lock left by a
process that no longer runs is taken over, saying so."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.training_helpers import loaders, tiny_net, train
from vitlib.cli import main
from vitlib.errors import CheckpointError
from vitlib.training import NoRunToResumeError, RunInProgressError, fit
from vitlib.training.run_lock import LOCK_FILE, LockHolder, run_lock

from .helpers import ROOT
from .test_training_ddp import torchrun

#: Trains two epochs into argv[1]; after the first it touches argv[2] and waits for argv[3].
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from vitlib.training import fit

    run, ready, go = map(Path, sys.argv[1:4])
    inputs = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(TensorDataset(inputs, torch.arange(16) % 2), batch_size=8)

    def pause(epoch, history):
        if epoch == 1:
            ready.touch()
            deadline = time.monotonic() + 120
            while not go.exists() and time.monotonic() < deadline:
                time.sleep(0.05)

    torch.manual_seed(0)
    fit(nn.Linear(4, 2), loader, loader, epochs=2, output_dir=run, progress=False,
        on_epoch_end=pause, lr=0.1)
    """
)

#: Takes the lock of argv[1] (or, with argv[3] == "record-only", only writes its record into
#: the lock file, as on a file system without locks), touches argv[2], then sleeps.
SLEEPER = textwrap.dedent(
    """
    import dataclasses, json, sys, time
    from pathlib import Path
    from vitlib.training.run_lock import LOCK_FILE, LockHolder, run_lock

    run, ready, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    if mode == "record-only":
        run.mkdir(parents=True, exist_ok=True)
        record = dataclasses.asdict(LockHolder.this_process())
        (run / LOCK_FILE).write_text(json.dumps(record))
        ready.touch()
        time.sleep(120)
    with run_lock(run):
        ready.touch()
        time.sleep(120)
    """
)


def _python(script: str, *args: Path | str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"the helper process ended early: {process.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """A process holding the lock of ``tmp_path / "run"``; killed at the end."""
    run = tmp_path / "run"
    process = _python(SLEEPER, run, tmp_path / "ready", "lock")
    try:
        _wait_for(tmp_path / "ready", process)
        yield run, process
    finally:
        process.kill()
        process.wait()


@pytest.mark.slow
def test_a_second_run_is_refused_while_the_first_runs_and_the_first_ends_intact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, ready, go = tmp_path / "run", tmp_path / "ready", tmp_path / "go"
    first = _python(HOLDER, run, ready, go)
    try:
        _wait_for(ready, first)
        holder = LockHolder.parse((run / LOCK_FILE).read_bytes())
        assert holder is not None
        assert (holder.pid, holder.host) == (first.pid, socket.gethostname())
        expected = re.escape(
            f"another run is in progress in {run}: process {first.pid} on host "
            f"{socket.gethostname()}, started {holder.started} ("
        )
        for resume, overwrite in ((False, False), (False, True), (True, False)):
            model, (train_loader, test_loader) = tiny_net(), loaders()
            with pytest.raises(RunInProgressError, match=expected) as refused:
                fit(
                    model,
                    train_loader,
                    test_loader,
                    epochs=1,
                    output_dir=run,
                    progress=False,
                    resume=resume,
                    overwrite=overwrite,
                )
            assert f"kill {first.pid}" in str(refused.value)
            assert "choose another output_dir" in str(refused.value)
        for flag in ([], ["--overwrite"], ["--resume"]):
            command = ["train", "--epochs", "1", "--no-progress", "--output-dir", str(run), *flag]
            assert main(command) == 2
            err = capsys.readouterr().err
            assert f"process {first.pid} on host" in err
            assert "--output-dir" in err
            assert len(err.strip().splitlines()) == 1
    finally:
        go.touch()
        _out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err[-3000:]
    state = torch.load(run / "last" / "training_state.pt", weights_only=True)
    assert state["epoch"] == 2, "the first run trained and saved both of its epochs"
    assert len(json.loads((run / "history.json").read_text())["val_acc"]) == 2
    assert sorted(p.name for p in run.iterdir()) == ["best", "history.json", "last"]


@pytest.mark.slow
def test_the_lock_of_a_killed_run_is_taken_over_saying_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = tmp_path / "run"
    process = _python(SLEEPER, run, tmp_path / "ready", "lock")
    _wait_for(tmp_path / "ready", process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (run / LOCK_FILE).is_file(), "a killed process leaves its lock file"
    with caplog.at_level(logging.WARNING, logger="vitlib.training"):
        _, history = train(epochs=1, output_dir=run)  # a new run: the stale lock is no file
    assert len(history) == 1
    taken = [r.getMessage() for r in caplog.records if "taking over the lock" in r.getMessage()]
    assert len(taken) == 1
    assert f"process {process.pid} on host {socket.gethostname()}" in taken[0]
    assert "no longer runs" in taken[0]
    assert not (run / LOCK_FILE).exists()


@pytest.mark.slow
def test_a_running_holder_is_respected_even_without_a_kernel_lock(tmp_path: Path) -> None:
    """A file system without locks: the record of a live process on this host refuses."""
    run = tmp_path / "run"
    process = _python(SLEEPER, run, tmp_path / "ready", "record-only")
    try:
        _wait_for(tmp_path / "ready", process)
        with pytest.raises(RunInProgressError, match=rf"process {process.pid} on host"):
            train(epochs=1, output_dir=run, overwrite=True)
    finally:
        process.kill()
        process.wait()
    assert (run / LOCK_FILE).is_file(), "the refused run left the holder's lock alone"


@pytest.mark.slow
def test_the_kernel_lock_outranks_the_record_of_an_ended_process(
    sleeper: tuple[Path, subprocess.Popen[str]],
) -> None:
    """A live process holds the lock while the file still names one that has ended (as in the
    moment a new holder takes over a stale lock): refused, and the file is left alone."""
    run, _ = sleeper
    lock = _record(run, pid=_dead_pid())
    before = lock.read_bytes()
    with pytest.raises(RunInProgressError, match=r"in progress in .*: another process holds"):
        train(epochs=1, output_dir=run)
    assert lock.read_bytes() == before


@pytest.mark.slow
def test_another_thread_of_this_process_is_refused_and_the_same_thread_reenters(
    tmp_path: Path,
) -> None:
    run = tmp_path / "mine"
    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            train(epochs=1, output_dir=run)
        except BaseException as error:
            errors.append(error)

    with run_lock(run):
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        _, history = train(epochs=1, output_dir=run)  # the holder's own fit
        assert (run / LOCK_FILE).is_file(), "the outer lock is still held"
    assert len(history) == 1
    assert len(errors) == 1
    assert isinstance(errors[0], RunInProgressError)
    assert "another thread" in str(errors[0])
    assert not (run / LOCK_FILE).exists()


def _record(run: Path, **changes: object) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": "2026-12-01T10:00:00+00:00",
        "command": "vitlib train",
        **changes,
    }
    (run / LOCK_FILE).write_text(json.dumps(record))
    return run / LOCK_FILE


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize(
    ("record", "why"),
    [
        ({"pid": "dead"}, "no longer runs"),
        ({"start_ticks": -1}, "no longer runs"),  # a live id given to a later process
        ({"boot_id": "an-earlier-boot"}, "no longer runs"),
        (None, "unreadable"),
    ],
)
def test_a_stale_lock_file_is_taken_over_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, record: dict[str, object] | None, why: str
) -> None:
    run = tmp_path / "run"
    if record is None:
        run.mkdir()
        (run / LOCK_FILE).write_text("{not json")
    else:
        pid = _dead_pid() if record.get("pid") == "dead" else os.getppid()
        _record(run, **{**record, "pid": pid})
    with caplog.at_level(logging.WARNING, logger="vitlib.training"):
        train(epochs=1, output_dir=run)
    assert any(why in r.getMessage() for r in caplog.records), caplog.text
    assert sorted(p.name for p in run.iterdir()) == ["best", "history.json", "last"]


def test_a_holder_on_another_host_is_refused_with_the_way_out(tmp_path: Path) -> None:
    lock = _record(tmp_path / "run", host="gpu-node-7")
    with pytest.raises(RunInProgressError) as refused:
        train(epochs=1, output_dir=tmp_path / "run")
    message = str(refused.value)
    assert "on host gpu-node-7, started 2026-12-01T10:00:00+00:00 (vitlib train)" in message
    assert f"if no run is going on there any more, delete {lock}" in message
    assert lock.is_file()


def test_a_refused_run_removes_the_folders_it_created(tmp_path: Path) -> None:
    with pytest.raises(NoRunToResumeError):
        train(epochs=1, output_dir=tmp_path / "new" / "run", resume=True)
    assert not (tmp_path / "new").exists()


def test_the_lock_file_refuses_a_run_folder_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "run").write_text("mine")
    with pytest.raises(NotADirectoryError, match=r"output_dir .*run is a file"):
        train(epochs=1, output_dir=tmp_path / "run")
    assert (tmp_path / "run").read_text() == "mine"


WORKER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path
    import torch
    from torch import nn
    from torch.utils.data import TensorDataset
    from vitlib.data import make_dataloaders
    from vitlib.training import distributed_session, fit, seed_everything

    out = Path(sys.argv[1])
    with distributed_session() as context:
        inputs = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
        data = TensorDataset(inputs, (inputs[:, 0] > 0).long())
        train_loader, test_loader = make_dataloaders(data, data, 4, distributed=True)
        report = {"pid": os.getpid()}
        try:
            fit(nn.Linear(4, 2), train_loader, test_loader, epochs=1, progress=False,
                output_dir=out / "held")
        except Exception as error:
            report["refused"] = type(error).__name__
            report["message"] = str(error)

        def holder(epoch, history):
            report["holder"] = json.loads((out / "mine" / ".vitlib-run.lock").read_text())["pid"]

        seed_everything(0)
        fit(nn.Linear(4, 2), train_loader, test_loader, epochs=1, progress=False,
            output_dir=out / "mine", on_epoch_end=holder)
        (out / f"rank{context.rank}.json").write_text(json.dumps(report))
    """
)


@pytest.mark.slow
def test_under_torchrun_rank_0_holds_the_lock_and_every_rank_hears_a_refusal(
    sleeper: tuple[Path, subprocess.Popen[str]], tmp_path: Path
) -> None:
    held, holder = sleeper
    held.rename(tmp_path / "held")  # the sleeper holds the lock of tmp_path/held now
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    result = torchrun(str(script), str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [report["refused"] for report in reports] == ["RunInProgressError", "RankFailedError"]
    for report in reports:
        assert f"process {holder.pid} on host" in report["message"]
    assert reports[1]["message"].startswith("rank 0 stopped the run: RunInProgressError: ")
    assert [report["holder"] for report in reports] == [reports[0]["pid"]] * 2


def test_a_link_in_place_of_the_lock_file_is_never_written_through(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    precious = tmp_path / "notes.txt"
    precious.write_text("mine")
    (tmp_path / "run" / LOCK_FILE).symlink_to(precious)
    with pytest.raises(CheckpointError, match=r"is not a regular file \(a link, a pipe...\)"):
        train(epochs=1, output_dir=tmp_path / "run")
    assert precious.read_text() == "mine"
    assert (tmp_path / "run" / LOCK_FILE).is_symlink()
    (tmp_path / "run" / LOCK_FILE).unlink()
    (tmp_path / "run" / LOCK_FILE).mkdir()
    with pytest.raises(CheckpointError, match=r"is not a regular file"):
        train(epochs=1, output_dir=tmp_path / "run")
