"""A full disk and Ctrl-C: one clear error naming what could not be written and what is intact,
never a raw traceback; the run stays resumable.

The full disk is real: a child process lowers its file-size limit (``RLIMIT_FSIZE``, with
``SIGXFSZ`` ignored, as ``ulimit -f`` does), so safetensors and ``torch.save`` fail as they do on
a full disk, each with its own kind of error.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import SafetensorError
from torch.utils.data import DataLoader, TensorDataset

import vitlib
from vitlib.cli import main
from vitlib.errors import SaveError
from vitlib.files import PARTIAL, write_files
from vitlib.training import fit

from .helpers import ROOT
from .image_helpers import write_image_folder
from .training_helpers import train

FAILURES: dict[str, tuple[BaseException, int | None, str]] = {
    "disk full": (OSError(errno.ENOSPC, "No space left on device"), errno.ENOSPC, "No space"),
    "file too large": (OSError(errno.EFBIG, "File too large"), errno.EFBIG, "File too large"),
    "quota": (OSError(errno.EDQUOT, "Disk quota exceeded"), errno.EDQUOT, "quota"),
    "read-only": (OSError(errno.EROFS, "Read-only file system"), errno.EROFS, "Read-only"),
    "safetensors": (
        SafetensorError("Error while serializing: I/O error: File too large (os error 27)"),
        errno.EFBIG,
        "File too large",
    ),
    "torch.save": (
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"),
        None,
        "torch.save could not write its file whole",
    ),
}


@pytest.mark.parametrize("kind", FAILURES)
def test_a_writer_that_cannot_store_its_bytes_is_one_save_error_naming_the_folder(
    tmp_path: Path, kind: str
) -> None:
    failure, code, reason = FAILURES[kind]
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "model.safetensors").write_text("previous")

    def write(staging: Path) -> None:
        (staging / "model.safetensors").write_text("half")
        raise failure

    with pytest.raises(SaveError) as caught:
        write_files(folder, write, overwrite=True)
    error = caught.value
    assert isinstance(error, OSError)
    assert isinstance(error, vitlib.VitlibError)
    assert (error.errno, error.filename) == (code, str(folder))
    assert str(error).startswith(f"cannot write into {folder}: ")
    assert reason in str(error)
    assert "nothing there was replaced, its files are as they were" in str(error)
    assert error.__cause__ is failure
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors"]
    assert (folder / "model.safetensors").read_text() == "previous"


@pytest.mark.parametrize(
    "failure",
    [
        ValueError("NaN is not valid JSON"),
        RuntimeError("shared tensors"),
        SafetensorError("invalid tensor metadata"),
        OSError(errno.ENOENT, "No such file or directory"),
    ],
    ids=repr,
)
def test_other_errors_of_a_writer_pass_unchanged(tmp_path: Path, failure: Exception) -> None:
    def write(staging: Path) -> None:
        raise failure

    with pytest.raises(type(failure)) as caught:
        write_files(tmp_path / "out", write, overwrite=True)
    assert caught.value is failure
    assert not isinstance(caught.value, SaveError)


MODEL: dict[str, Any] = {
    "img_size": 8,
    "in_channels": 1,
    "patch_size": 4,
    "num_transformer_layers": 1,
    "embedding_dim": 32,
    "mlp_size": 64,
    "num_heads": 2,
    "num_classes": 2,
}

#: Resumes the run in argv[1] for a second epoch under a file-size limit of argv[2] bytes.
LIMITED_RESUME = textwrap.dedent(
    f"""
    import json, resource, signal, sys
    from pathlib import Path
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    import vitlib
    from vitlib.training import fit

    run, limit = Path(sys.argv[1]), int(sys.argv[2])
    inputs = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(TensorDataset(inputs, torch.arange(8) % 2), batch_size=4)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    try:
        fit(vitlib.ViT(**{MODEL!r}), loader, loader, epochs=2, resume=True, output_dir=run,
            progress=False, lr=0.01)
    except Exception as error:
        chain = [error]
        while chain[-1].__cause__ is not None:
            chain.append(chain[-1].__cause__)
        print(json.dumps({{"message": str(error), "errno": getattr(error, "errno", None),
                          "chain": [type(link).__name__ for link in chain]}}))
    """
)


def _first_epoch(run: Path) -> dict[str, bytes]:
    torch.manual_seed(0)
    inputs = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(TensorDataset(inputs, torch.arange(8) % 2), batch_size=4)
    fit(vitlib.ViT(**MODEL), loader, loader, epochs=1, output_dir=run, progress=False, lr=0.01)
    return {p.name: p.read_bytes() for p in (run / "last").iterdir()}


def _run_limited(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize("failing", ["safetensors", "torch.save"])
def test_a_full_disk_during_a_save_is_one_error_and_the_last_checkpoint_stays_whole(
    tmp_path: Path, failing: str
) -> None:
    run = tmp_path / "run"
    before = _first_epoch(run)
    weights, state = len(before["model.safetensors"]), len(before["training_state.pt"])
    # Too small for the weights, or room for the weights but not for the training state.
    limit = weights // 2 if failing == "safetensors" else (weights + state) // 2
    result = _run_limited(LIMITED_RESUME, str(run), str(limit))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    root = {"safetensors": "SafetensorError", "torch.save": "RuntimeError"}[failing]
    assert report["chain"] == ["SaveError", "SaveError", root]
    message = report["message"]
    assert message.startswith(f"cannot write into {run}{os.sep}")
    if failing == "safetensors":
        assert report["errno"] == errno.EFBIG
        assert "File too large" in message
    else:
        assert report["errno"] is None
        cause = f"probably a file reached the file-size limit of {limit:,} bytes (ulimit -f)"
        assert cause in message
    assert (
        f"The run's last complete checkpoint, epoch 1, is intact in {run / 'last'}: free some "
        "space, then continue the run with resume=True (vitlib train --resume)"
    ) in message
    assert {p.name: p.read_bytes() for p in (run / "last").iterdir()} == before
    assert not list(run.rglob(PARTIAL))
    assert not (run / ".vitlib-run.lock").exists()


def _folder_run(data: Path, run: Path, *flags: str) -> list[str]:
    return [
        "train", "--data", str(data), "--preset", "ViT-Ti/4", "--image-size", "8",
        "--layers", "1", "--batch-size", "4", "--no-progress", "--output-dir", str(run), *flags,
    ]  # fmt: skip


@pytest.fixture
def image_data(tmp_path: Path) -> Path:
    write_image_folder(tmp_path / "data" / "train", per_class=3)  # 1 of each held out
    write_image_folder(tmp_path / "data" / "test", per_class=2)
    return tmp_path / "data"


CLI_UNDER_LIMIT = textwrap.dedent(
    """
    import resource, signal, sys
    from vitlib.cli import main

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
    sys.exit(main(sys.argv[2:]))
    """
)


@pytest.mark.slow
def test_vitlib_train_on_a_full_disk_prints_one_line_and_exits_2(
    tmp_path: Path, image_data: Path
) -> None:
    run = tmp_path / "run"
    assert main(_folder_run(image_data, run, "--epochs", "1")) == 0
    before = (run / "last" / "training_state.pt").read_bytes()
    limit = (run / "last" / "model.safetensors").stat().st_size // 2
    argv = _folder_run(image_data, run, "--epochs", "2", "--resume")
    result = _run_limited(CLI_UNDER_LIMIT, str(limit), *argv)
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"vitlib train: error: cannot write into {run}{os.sep}")
    assert "File too large" in line
    assert f"epoch 1, is intact in {run / 'last'}" in line
    assert "vitlib train --resume" in line
    assert (run / "last" / "training_state.pt").read_bytes() == before


@pytest.mark.slow
def test_ctrl_c_during_vitlib_train_prints_one_line_with_the_resume_hint_and_exits_130(
    tmp_path: Path, image_data: Path
) -> None:
    run = tmp_path / "run"
    argv = [sys.executable, "-m", "vitlib", *_folder_run(image_data, run, "--epochs", "100000")]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    for line in process.stdout:  # wait until an epoch is saved
        if line.startswith("epoch 2/") or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    assert err.strip().splitlines() == [
        f"vitlib train: interrupted; the run in {run} keeps its last complete epoch: continue "
        "it with the same command and --resume (without --overwrite)"
    ]
    assert not (run / ".vitlib-run.lock").exists()
    assert not list(run.rglob(PARTIAL))
    saved = torch.load(run / "last" / "training_state.pt", weights_only=True)["epoch"]
    assert saved >= 2
    assert main(_folder_run(image_data, run, "--epochs", str(saved + 1), "--resume")) == 0


def _interrupt(*args: object) -> int:
    raise KeyboardInterrupt


def test_ctrl_c_before_any_epoch_was_saved_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("vitlib.training.recipe.train_from_args", _interrupt)
    assert main(["train", "--output-dir", str(tmp_path / "run"), "--epochs", "1"]) == 130
    assert capsys.readouterr().err == (
        f"vitlib train: interrupted; no epoch of the run in {tmp_path / 'run'} was saved yet\n"
    )
    assert not (tmp_path / "run").exists(), "the lock's folder is removed again"
    monkeypatch.setattr("vitlib.cli.presets.run", _interrupt)
    assert main(["presets"]) == 130
    assert capsys.readouterr().err == "vitlib presets: interrupted\n"


def _full_disk(*args: object, **kwargs: object) -> None:
    raise SaveError(errno.ENOSPC, "cannot write into somewhere: No space left on device", "x")


@pytest.mark.parametrize(
    ("failing", "epochs_before", "expected"),
    [
        ("save_checkpoint", 0, "No epoch of the run in {run} was saved yet: free some space, then "
         "start it again (overwrite=True, vitlib train --overwrite)"),
        ("save_checkpoint", 1, "The run's last complete checkpoint, epoch 1, is intact in {last}"),
        ("write_run_json", 1, "The run's last complete checkpoint, epoch 2, is intact in {last}"),
    ],
)  # fmt: skip
def test_a_failed_save_names_the_epoch_that_last_holds(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failing: str,
    epochs_before: int,
    expected: str,
) -> None:
    """``best/`` and ``last/`` first, the history after: which save failed tells what ``last/``
    holds."""
    run = tmp_path / "run"
    if epochs_before:
        train(epochs=epochs_before, output_dir=run)
    monkeypatch.setattr(f"vitlib.training.resume.{failing}", _full_disk)
    with pytest.raises(SaveError) as caught:
        train(epochs=epochs_before + 1, output_dir=run, resume=bool(epochs_before))
    assert caught.value.errno == errno.ENOSPC
    assert str(caught.value).startswith("cannot write into somewhere: No space left on device. ")
    assert expected.format(run=run, last=run / "last") in str(caught.value)
    assert not (run / ".vitlib-run.lock").exists()
