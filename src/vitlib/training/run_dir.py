"""The run directory: checkpoints, training state and history, written atomically.

Layout of ``output_dir``::

    last/          the model after the latest epoch, plus training_state.pt (resume from here)
    best/          the model with the best test accuracy so far
    history.json   per-epoch metrics (History.as_dict())

``last/`` and ``best/`` are ``vitlib.save_pretrained`` directories (``config.json`` +
``model.safetensors``) for a :class:`vitlib.ViT`, and hold just ``model.safetensors`` for any other
model. Every directory is first written to a temporary sibling and then renamed into place, so an
interrupted save leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import safetensors.torch
import torch
from torch import nn

from vitlib.training.errors import NoRunToResumeError, RunExistsError, TrainingConfigError

LAST: Final = "last"
BEST: Final = "best"
HISTORY_FILE: Final = "history.json"
STATE_FILE: Final = "training_state.pt"
WEIGHTS_FILE: Final = "model.safetensors"
RUN_ENTRIES: Final = (LAST, BEST, HISTORY_FILE)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _old(directory: Path) -> Path:
    return directory.parent / f".{directory.name}.old"


def _is_our_temporary(entry: Path) -> bool:
    return entry.name.startswith(tuple(f".{name}.tmp-" for name in RUN_ENTRIES)) or entry.name in {
        _old(entry.parent / name).name for name in RUN_ENTRIES
    }


def check_output_dir(output_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to overwrite a run silently, or to resume where there is no run.

    Raises:
        TrainingConfigError: ``resume`` and ``overwrite`` are both true.
        RunExistsError: A new run was asked for in a non-empty directory without ``overwrite=True``.
        NoRunToResumeError: ``resume=True`` but ``output_dir/last/training_state.pt`` is missing.
        NotADirectoryError: ``output_dir`` is a file.
    """
    if resume and overwrite:
        raise TrainingConfigError(
            "resume=True and overwrite=True contradict each other; pass resume=True to continue "
            f"the run in {output_dir}, or overwrite=True to replace it."
        )
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(
            f"output_dir {output_dir} is a file; expected a directory. Pick another path."
        )
    if resume:
        last = output_dir / LAST
        if not (last / STATE_FILE).is_file() and not (_old(last) / STATE_FILE).is_file():
            raise NoRunToResumeError(
                f"resume=True, but {output_dir} holds no run to resume (no {LAST}/{STATE_FILE}); "
                "drop resume=True to start a new run there."
            )
        return
    if not overwrite and output_dir.is_dir() and any(output_dir.iterdir()):
        raise RunExistsError(
            f"output_dir {output_dir} is not empty (it holds a run or other files); expected an "
            "empty or new directory. Pass resume=True to continue the run saved there, "
            "overwrite=True to replace it, or choose another output_dir."
        )


def prepare_output_dir(output_dir: Path, *, resume: bool, overwrite: bool, writer: bool) -> None:
    """Check ``output_dir`` (every rank), then let the ``writer`` rank prepare it.

    Before a resume the writer repairs an interrupted save; for a new run it clears the old one
    (``overwrite=True``) or creates the directory.
    """
    check_output_dir(output_dir, resume=resume, overwrite=overwrite)
    if not writer:
        return
    if resume:
        recover_interrupted_save(output_dir / LAST)
    else:
        clear_run(output_dir)


def clear_run(output_dir: Path) -> None:
    """Delete ``last/``, ``best/``, ``history.json`` and stale temporaries (``overwrite=True``).

    Other files in ``output_dir`` are left alone: vitlib only deletes what a run writes.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    for entry in output_dir.iterdir():
        if entry.name in RUN_ENTRIES or _is_our_temporary(entry):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def recover_interrupted_save(directory: Path) -> bool:
    """Restore ``directory`` from ``.<name>.old`` after a save cut between its renames.

    Returns:
        Whether anything was restored.
    """
    old = _old(directory)
    if directory.exists() or not old.is_dir():
        return False
    os.replace(old, directory)
    return True


def replace_directory(target: Path, write: Callable[[Path], None]) -> None:
    """Build a directory with ``write(tmp)`` in a temporary sibling of ``target``, then swap it in.

    The previous ``target`` is renamed to ``.<name>.old`` first and deleted last, so at every moment
    either the old or the new directory is complete (:func:`recover_interrupted_save` repairs the
    moment between).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    temporary.chmod(0o777 & ~_umask())  # mkdtemp makes it private; a run directory is not
    try:
        write(temporary)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    old = _old(target)
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(temporary, target)
    shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temporary file, then ``os.replace``)."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.chmod(temporary, 0o666 & ~_umask())
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_model_files(model: nn.Module, directory: Path) -> None:
    """Write ``model`` into ``directory``: ``save_pretrained`` for a ViT, else safetensors."""
    from vitlib import ViT  # imported here: the package root imports this module's users

    if isinstance(model, ViT):
        from vitlib import save_pretrained

        save_pretrained(model, directory, overwrite=True)
    else:
        safetensors.torch.save_model(model, str(directory / WEIGHTS_FILE))


def save_checkpoint(
    model: nn.Module, directory: Path, *, training_state: Mapping[str, Any] | None = None
) -> None:
    """Atomically (re)write ``directory``: model files and, if given, ``training_state.pt``."""

    def write(temporary: Path) -> None:
        save_model_files(model, temporary)
        if training_state is not None:
            torch.save(dict(training_state), temporary / STATE_FILE)

    replace_directory(directory, write)


def load_model_files(model: nn.Module, directory: Path) -> None:
    """Load what :func:`save_model_files` wrote into ``model`` (same keys and shapes)."""
    from vitlib import ViT

    if isinstance(model, ViT):
        from vitlib import load_pretrained

        saved = load_pretrained(directory)
        if saved.config != model.config:
            raise TrainingConfigError(
                f"the run in {directory} was trained with {saved.config}, but the model given has "
                f"{model.config}; build the model with the saved config "
                "(vitlib.load_pretrained) to resume."
            )
        model.load_state_dict(saved.state_dict())
    else:
        safetensors.torch.load_model(model, str(directory / WEIGHTS_FILE), strict=True)


def load_training_state(directory: Path) -> dict[str, Any]:
    """Read ``directory/training_state.pt`` without unpickling code (``weights_only=True``)."""
    state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise TypeError(
            f"{directory / STATE_FILE} holds a {type(state).__name__}; expected the dict that "
            "fit() saves. Start a new run with overwrite=True."
        )
    return state
