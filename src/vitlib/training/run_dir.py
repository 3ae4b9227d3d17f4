"""The run directory: checkpoints, training state and history, written atomically.

Layout of ``output_dir``:

```text
last/          the model after the latest epoch, plus training_state.pt (resume from here)
best/          the model with the best test accuracy so far
history.json   per-epoch metrics (History.as_dict())
settings.json  the options of vitlib train / vitlib finetune (checked on --resume)
```

``last/`` and ``best/`` are ``vitlib.save_pretrained`` directories (``config.json`` +
``model.safetensors``) for a ``vitlib.ViT``, and hold just ``model.safetensors`` for any other
model. They are written by ``vitlib.checkpoints.atomic.write_files_atomically``, the writer of
``save_pretrained``: an interrupted save leaves the previous files or the new ones, never a mix,
and the next resume (or load) finishes or undoes it.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from vitlib.checkpoints.atomic import COMPLETE, recover_interrupted_save, write_files_atomically
from vitlib.checkpoints.files import write_checkpoint_files
from vitlib.checkpoints.metadata import attach_metadata, model_metadata
from vitlib.checkpoints.pretrained import checkpoint_contents, load_pretrained
from vitlib.training.errors import (
    NoRunToResumeError,
    RunExistsError,
    TrainingConfigError,
    damaged_run_error,
)
from vitlib.vit import ViT

LAST: Final = "last"
BEST: Final = "best"
HISTORY_FILE: Final = "history.json"
STATE_FILE: Final = "training_state.pt"
WEIGHTS_FILE: Final = "model.safetensors"
SETTINGS_FILE: Final = "settings.json"
RUN_ENTRIES: Final = (LAST, BEST, HISTORY_FILE, SETTINGS_FILE)
# How check_output_dir names its settings: as fit's keywords, or as the command's flags.
_PYTHON_WORDS: Final = {
    "resume": "resume=True",
    "overwrite": "overwrite=True",
    "output_dir": "output_dir",
}
_CLI_WORDS: Final = {"resume": "--resume", "overwrite": "--overwrite", "output_dir": "--output-dir"}


def _partial_json(path: Path) -> Path:
    return path.parent / f".{path.name}.partial"


def check_output_dir(output_dir: Path, *, resume: bool, overwrite: bool, cli: bool = False) -> None:
    """Refuse to overwrite a run silently, or to resume where there is no run.

    With ``cli=True`` the messages name the command's flags (``--resume``, ``--overwrite``,
    ``--output-dir``) instead of ``fit``'s keywords.

    Raises:
        TrainingConfigError: ``resume`` and ``overwrite`` are both true.
        RunExistsError: A new run was asked for in a non-empty directory without ``overwrite=True``.
        NoRunToResumeError: ``resume=True`` but ``output_dir/last/training_state.pt`` is missing.
        NotADirectoryError: ``output_dir`` is a file.
    """
    word = _CLI_WORDS if cli else _PYTHON_WORDS
    resume_word, overwrite_word, dir_word = word["resume"], word["overwrite"], word["output_dir"]
    if resume and overwrite:
        raise TrainingConfigError(
            f"{resume_word} and {overwrite_word} contradict each other; pass {resume_word} to "
            f"continue the run in {output_dir}, or {overwrite_word} to replace it."
        )
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(
            f"{dir_word} {output_dir} is a file; expected a directory. Pick another path."
        )
    if resume:
        last = output_dir / LAST
        if not (last / STATE_FILE).is_file() and not (last / COMPLETE / STATE_FILE).is_file():
            raise NoRunToResumeError(
                f"{resume_word}, but {output_dir} holds no run to resume (no {LAST}/"
                f"{STATE_FILE}); drop {resume_word} to start a new run there."
            )
        return
    if not overwrite and output_dir.is_dir() and any(output_dir.iterdir()):
        raise RunExistsError(
            f"{dir_word} {output_dir} is not empty (it holds a run or other files); expected an "
            f"empty or new directory. Pass {resume_word} to continue the run saved there, "
            f"{overwrite_word} to replace it, or choose another {dir_word}."
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
        if (output_dir / BEST).is_dir():
            recover_interrupted_save(output_dir / BEST)
    else:
        clear_run(output_dir)


def check_resumed_settings(output_dir: Path, settings: Mapping[str, Any]) -> None:
    """Refuse to resume a run with command options that change it.

    ``settings`` maps each flag that shapes the run (``--batch-size``, ``--lr``...) to its value;
    those saved in ``output_dir/settings.json`` by the run's first epochs must be the same.
    A run without the file (saved by ``fit`` directly, or an older vitlib) is not checked here
    (``fit`` still compares its own recipe).

    Raises:
        TrainingConfigError: A setting differs; the message names each flag, saved and given.
    """
    path = output_dir / SETTINGS_FILE
    if not path.is_file():
        return
    from vitlib.checkpoints.files import read_json

    saved = read_json(path)
    changed = sorted(
        name for name in set(saved) | set(settings) if saved.get(name) != settings.get(name)
    )
    if changed:
        differences = "; ".join(
            f"{name} saved {saved.get(name)!r}, given {settings.get(name)!r}" for name in changed
        )
        raise TrainingConfigError(
            f"--resume with options that change the run saved in {output_dir} ({differences}); "
            "give the saved values to resume it, or start a new run (--overwrite or another "
            "--output-dir). Only --epochs, --max-steps and the output options may change."
        )


def clear_run(output_dir: Path) -> None:
    """Delete ``last/``, ``best/``, ``history.json``, ``settings.json`` and the history's
    temporary (``overwrite=True``).

    Other files in ``output_dir`` are left alone: vitlib only deletes what a run writes.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    for entry in output_dir.iterdir():
        if (
            entry.name in RUN_ENTRIES
            or entry.name == _partial_json(entry.parent / HISTORY_FILE).name
        ):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` atomically (``.<name>.partial``, then ``os.replace``).

    The temporary has a fixed name, so one left by a killed process is replaced by the next write.
    """
    temporary = _partial_json(path)
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2)
            file.write("\n")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def save_model_files(
    model: nn.Module, directory: Path, *, weights: Mapping[str, torch.Tensor] | None = None
) -> None:
    """Write ``model``'s files into ``directory``: those of ``save_pretrained`` for a ViT, else
    ``model.safetensors``.

    ``weights`` replaces ``model.state_dict()``: the full tensors of a sharded model, gathered by
    `vitlib.training.fsdp.full_model_state`.
    """
    if weights is not None and isinstance(model, ViT):
        model = _unsharded_copy(model, weights)
    if isinstance(model, ViT):
        write_checkpoint_files(directory, *checkpoint_contents(model))
    elif weights is not None:
        contiguous = {name: tensor.detach().cpu().contiguous() for name, tensor in weights.items()}
        safetensors.torch.save_file(contiguous, str(directory / WEIGHTS_FILE))
    else:
        safetensors.torch.save_model(model, str(directory / WEIGHTS_FILE))


def _unsharded_copy(model: ViT, weights: Mapping[str, torch.Tensor]) -> ViT:
    """A plain ViT of ``model``'s config and metadata holding ``weights`` (shared, not copied)."""
    with torch.device("meta"):
        copy = ViT.from_config(model.config)
    copy.load_state_dict(weights, assign=True)
    metadata = model_metadata(model)
    labels = None if metadata.labels is None else list(metadata.labels)
    attach_metadata(copy, labels=labels, preprocessing=metadata.preprocessing)
    return copy


def save_checkpoint(
    model: nn.Module,
    directory: Path,
    *,
    training_state: Mapping[str, Any] | None = None,
    weights: Mapping[str, torch.Tensor] | None = None,
) -> None:
    """Atomically (re)write ``directory``: model files and, if given, ``training_state.pt``.

    ``weights``: the gathered full tensors of a sharded ``model`` (see `save_model_files`).
    """

    def write(staging: Path) -> None:
        save_model_files(model, staging, weights=weights)
        if training_state is not None:
            torch.save(dict(training_state), staging / STATE_FILE)

    write_files_atomically(directory, write, overwrite=True, what="fit")


def load_model_files(model: nn.Module, directory: Path) -> None:
    """Load what ``save_model_files`` wrote into ``model`` (same keys and shapes).

    The files are checked before anything is read: ``config.json`` (for a ``vitlib.ViT``)
    and ``model.safetensors``.

    Raises:
        CheckpointError: A file is missing, or the weights file is unreadable (truncated,
            corrupt); the message names the file and what to do instead of resuming.
        TrainingConfigError: The saved model differs from ``model`` (another config, other
            parameter names or shapes).
    """
    is_vit = isinstance(model, ViT)
    needed = [directory / "config.json"] if is_vit else []
    needed.append(directory / WEIGHTS_FILE)
    for path in needed:
        if not path.is_file():
            problem = "is missing" if not path.exists() else "is not a regular file"
            raise damaged_run_error(path, problem)
    if is_vit:
        saved = load_pretrained(directory)
        if saved.config != model.config:
            raise TrainingConfigError(
                f"the run in {directory} was trained with {saved.config}, but the model given has "
                f"{model.config}; build the model with the saved config "
                "(vitlib.load_pretrained) to resume."
            )
        model.load_state_dict(saved.state_dict())
        return
    weights = directory / WEIGHTS_FILE
    try:
        safetensors.torch.load_model(model, str(weights), strict=True)
    except SafetensorError as error:
        raise damaged_run_error(weights, f"is corrupt or truncated ({error})") from error
    except RuntimeError as error:  # load_model's missing/unexpected keys or shape mismatches
        raise TrainingConfigError(
            f"the weights in {weights} do not fit the model given ({error}); expected the same "
            "model class and sizes as the run was trained with. Build that model to resume, or "
            "start a new run (overwrite=True or another output_dir)."
        ) from error


def load_training_state(directory: Path) -> dict[str, Any]:
    """Read ``directory/training_state.pt`` without unpickling code (``weights_only=True``).

    Only the file and its outer type are checked here; the entries are checked by the caller.

    Raises:
        CheckpointError: The file is missing, empty, truncated or corrupt, holds something other
            than the plain data ``fit`` saves (refused: nothing in it is executed), or is not a
            dict. The message names the file and what to do instead of resuming.
    """
    path = directory / STATE_FILE
    if not path.is_file():
        problem = "is missing" if not path.exists() else "is not a regular file"
        raise damaged_run_error(path, problem)
    if path.stat().st_size == 0:
        raise damaged_run_error(path, "is empty (0 bytes): a save was cut short or truncated")
    with path.open("rb") as file:  # errors opening it (permissions) are not about its bytes
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            # torch's text advises weights_only=False, i.e. running the file's code: never shown
            refused = "global" in str(error).lower()
            problem = (
                "was refused: it holds objects other than the tensors, numbers, strings, lists "
                "and dicts that fit() saves, and vitlib never runs code from a file "
                "(weights_only=True)"
                if refused
                else "is corrupt: it is not the file fit() saves"
            )
            raise damaged_run_error(path, problem) from None
        except MemoryError:
            raise
        except Exception as error:  # torch raises RuntimeError, EOFError, OSError... on bad bytes
            reason = str(error).split(". ")[0].strip() or type(error).__name__
            raise damaged_run_error(path, f"is corrupt or truncated ({reason})") from error
    if not isinstance(state, dict):
        raise damaged_run_error(
            path, f"holds a {type(state).__name__}; expected the dict that fit() saves"
        )
    return state
