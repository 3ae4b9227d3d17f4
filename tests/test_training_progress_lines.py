"""What fit shows while it trains, by where its output goes.

On a terminal a bar (or, without tqdm, a few lines per pass); redirected to a file or a pipe one
line per epoch and no ``\\r``; the bar's last frame carries the pass's final numbers; under
torchrun only rank 0 shows anything.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from vitlib.training import progress
from vitlib.training.progress import Progress, is_main_process, is_terminal, report

from .helpers import ROOT

_SCRIPT = """
import sys
{hide_tqdm}
from tests.training_helpers import loaders, tiny_net
from vitlib.training import fit
train_loader, test_loader = loaders()
fit(tiny_net(), train_loader, test_loader, epochs=2, lr=0.05, progress=True)
"""

TQDM = pytest.param(True, id="with-tqdm")
NO_TQDM = pytest.param(False, id="without-tqdm")


def _script(tqdm: bool) -> list[str]:
    if tqdm:
        pytest.importorskip("tqdm")
    hide = "" if tqdm else "sys.modules['tqdm'] = None; sys.modules['tqdm.auto'] = None"
    return [sys.executable, "-c", _SCRIPT.format(hide_tqdm=hide)]


def _environment() -> dict[str, str]:
    """This environment without torchrun's variables (a test may run under torchrun)."""
    return {name: value for name, value in os.environ.items() if name not in {"RANK", "WORLD_SIZE"}}


def _run_in_terminal(command: list[str]) -> str:
    """Run ``command`` with stdout and stderr on a pseudo-terminal; return what it showed."""
    leader, follower = pty.openpty()
    # A terminal of 24 rows and 100 columns (a new pseudo-terminal has 0 columns: no bar fits).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    with subprocess.Popen(
        command, stdout=follower, stderr=follower, cwd=ROOT, env=_environment()
    ) as process:
        os.close(follower)
        shown = bytearray()
        while True:
            ready, _, _ = select.select([leader], [], [], 120)
            if not ready:
                process.kill()
                raise AssertionError(f"no output for 120 s; so far: {shown.decode()}")
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: the process has exited
                break
            if not chunk:
                break
            shown += chunk
        assert process.wait(timeout=60) == 0, shown.decode(errors="replace")
    os.close(leader)
    return shown.decode(errors="replace")


@pytest.mark.slow
@pytest.mark.parametrize("tqdm", [TQDM, NO_TQDM])
def test_redirected_output_gets_one_line_per_epoch_and_no_carriage_returns(
    tqdm: bool, tmp_path: Path
) -> None:
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        result = subprocess.run(
            _script(tqdm),
            stdout=stdout,
            stderr=stderr,
            check=False,
            cwd=ROOT,
            env=_environment(),
            timeout=120,
        )
    written, errors = out.read_text(), err.read_text()
    assert result.returncode == 0, errors
    assert "\r" not in written + errors
    epoch_lines = [line for line in written.splitlines() if line.startswith("epoch ")]
    assert [line.split("  ")[0] for line in epoch_lines] == ["epoch 1/2", "epoch 2/2"], written
    assert "train loss" in epoch_lines[0]
    assert " train 5/5" not in written + errors  # no per-batch lines in a file


@pytest.mark.slow
def test_a_terminal_with_tqdm_gets_a_bar_and_the_epoch_lines() -> None:
    shown = _run_in_terminal(_script(tqdm=True))
    assert "epoch 1 train: 100%" in shown  # the bar, with its last frame
    assert "\repoch 1 train:" in shown  # redrawn in place
    assert "epoch 1/2  train loss" in shown
    assert "epoch 2/2  train loss" in shown


@pytest.mark.slow
def test_a_terminal_without_tqdm_gets_lines_per_batch() -> None:
    shown = _run_in_terminal(_script(tqdm=False))
    assert "epoch 1 train 5/5 loss=" in shown
    assert "epoch 2/2  train loss" in shown


class _Terminal(io.StringIO):
    """A stream that says it is a terminal, to watch what a bar draws."""

    def isatty(self) -> bool:
        return True


def _on_terminal(monkeypatch: pytest.MonkeyPatch) -> _Terminal:
    """Make stderr, where a bar draws, a terminal for the rest of the test (in the test's body:
    pytest's capture would replace a stream set by a fixture)."""
    pytest.importorskip("tqdm")
    stream = _Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    return stream


def test_the_last_frame_of_a_bar_shows_the_final_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    terminal = _on_terminal(monkeypatch)
    batches = 7
    seen = {"loss": 0.0}
    with Progress(batches, "epoch 1 train") as bar:
        for batch in range(1, batches + 1):
            seen["loss"] = float(batch)  # the running metric after this batch
            bar.update(lambda: dict(seen))
    frames = [frame for frame in terminal.getvalue().split("\r") if f"{batches}/{batches}" in frame]
    assert frames, terminal.getvalue()
    assert "loss=7" in frames[-1], frames[-1]  # not loss=6: a batch behind


def test_a_bar_is_drawn_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    terminal = _on_terminal(monkeypatch)
    with Progress(3, "evaluate") as bar:
        bar.update()
    assert "evaluate" in terminal.getvalue()
    redirected = io.StringIO()
    monkeypatch.setattr(sys, "stderr", redirected)
    monkeypatch.setattr(sys, "stdout", redirected)
    with Progress(3, "evaluate") as bar:
        for _ in range(3):
            bar.update(lambda: {"loss": 1.0})
    assert redirected.getvalue() == ""


@pytest.mark.parametrize(
    ("rank", "main"),
    [(None, True), ("0", True), ("1", False), ("3", False), ("", True), ("x", True)],
)
def test_only_rank_zero_reports(
    rank: str | None,
    main: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    terminal = _on_terminal(monkeypatch)
    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    monkeypatch.setattr(progress.logger, "handlers", [])  # printed, not logged
    monkeypatch.setattr(progress.logger, "propagate", False)
    assert is_main_process() is main
    report("resumed %s", "runs/x")
    with Progress(2, "epoch 1 train") as bar:
        bar.update()
    printed = capsys.readouterr().out
    assert ("resumed runs/x" in printed) is main
    assert ("epoch 1 train" in terminal.getvalue()) is main


def test_report_goes_to_the_logger_when_logging_is_configured(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("RANK", raising=False)
    with caplog.at_level(logging.INFO, logger="vitlib.training"):
        report("epoch %d/%d", 1, 2)
    assert "epoch 1/2" in caplog.text
    assert capsys.readouterr().out == ""


class _NoIsatty:
    pass


class _Broken(io.StringIO):
    def isatty(self) -> bool:
        raise ValueError("I/O operation on closed file")


def test_is_terminal_is_false_for_what_is_not_a_terminal() -> None:
    assert not is_terminal(None)
    assert not is_terminal(io.StringIO())
    assert not is_terminal(_NoIsatty())  # type: ignore[arg-type]
    assert not is_terminal(_Broken())
    closed = io.StringIO()
    closed.close()
    assert not is_terminal(closed)
    assert is_terminal(_Terminal())


@pytest.mark.parametrize(("level", "logged"), [(logging.DEBUG, True), (logging.INFO, False)])
def test_a_log_gets_the_batch_lines_only_at_debug(
    level: int,
    logged: bool,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    with caplog.at_level(level, logger="vitlib.training"), Progress(10, "epoch 2 train") as bar:
        for _ in range(10):
            bar.update(lambda: {"loss": 0.5})
    lines = [r for r in caplog.records if r.getMessage().startswith("epoch 2 train")]
    assert bool(lines) is logged
    if logged:
        assert lines[-1].getMessage() == "epoch 2 train 10/10 loss=0.5"
        assert {record.levelno for record in lines} == {logging.DEBUG}
    assert capsys.readouterr().out == ""
