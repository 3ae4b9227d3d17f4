"""The run directory of [`fit`][vitlib.training.fit]: checking it, clearing it, writing its
files. Its layout is named once, in `vitlib.checkpoints.run_folder`.

``last/`` and ``best/`` are ``vitlib.save_pretrained`` directories (``config.json`` +
``model.safetensors``) for a ``vitlib.ViT``, and hold just ``model.safetensors`` for any other
model. Every file is written by [`vitlib.files.write_files`][vitlib.files.write_files]: an
interrupted save leaves the previous files or the new ones, never a mix, and the next resume
(or load) finishes or undoes it.
"""

from __future__ import annotations

import shutil
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Final

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from vitlib.checkpoints.metadata import attach_metadata, model_metadata
from vitlib.checkpoints.pretrained import checkpoint_contents, load_pretrained
from vitlib.checkpoints.run_folder import (
    BEST,
    LAST,
    RUN_ENTRIES,
    STATE_FILE,
)
from vitlib.checkpoints.weights import CONFIG_FILE, WEIGHTS_FILE, write_checkpoint_files
from vitlib.files import COMPLETE, dump_json, read_json, recover_interrupted_save, write_files
from vitlib.training.distributed import on_main_rank
from vitlib.training.errors import (
    NoRunToResumeError,
    RunExistsError,
    TrainingConfigError,
    damaged_run_error,
)
from vitlib.training.run_names import taken
from vitlib.vit import ViT

__all__ = [
    "check_output_dir",
    "check_same_settings",
    "clear_run",
    "load_model_files",
    "prepare_output_dir",
    "save_checkpoint",
    "save_model_files",
    "saved_settings",
    "write_run_json",
]

# How the messages name the settings: as fit's keywords, or as the command's flags.
_PYTHON_WORDS: Final = {
    "resume": "resume=True",
    "overwrite": "overwrite=True",
    "output_dir": "output_dir",
}
_CLI_WORDS: Final = {"resume": "--resume", "overwrite": "--overwrite", "output_dir": "--output-dir"}


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
    if not overwrite and output_dir.is_dir() and taken(output_dir):
        raise RunExistsError(
            f"{dir_word} {output_dir} is not empty (it holds a run or other files); expected an "
            f"empty or new directory. Pass {resume_word} to continue the run saved there, "
            f"{overwrite_word} to replace it, or choose another {dir_word}."
        )


def prepare_output_dir(output_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Check ``output_dir`` (every rank), then let rank 0 prepare it (a collective: the other
    ranks wait for it, and raise if it fails).

    Before a resume rank 0 repairs an interrupted save; for a new run it clears the old one
    (``overwrite=True``) or creates the directory.
    """
    check_output_dir(output_dir, resume=resume, overwrite=overwrite)

    def prepare() -> None:
        if resume:
            recover_interrupted_save(output_dir / LAST)
            if (output_dir / BEST).is_dir():
                recover_interrupted_save(output_dir / BEST)
        else:
            clear_run(output_dir)

    on_main_rank(prepare)


def check_same_settings(
    saved: Mapping[str, Any],
    given: Mapping[str, Any],
    run_dir: Path,
    *,
    may_change: Collection[str] = (),
    cli: bool = False,
) -> None:
    """Refuse to resume the run in ``run_dir`` with settings that change it.

    The one comparison of saved and given settings: ``fit``'s recipe (``TrainConfig`` fields)
    and the commands' options (``settings.json``) alike.

    Args:
        saved: The settings the run was saved with.
        given: The settings of this call.
        run_dir: The run, for the message.
        may_change: Settings that may differ (the run's length).
        cli: Name the command's flags in the message instead of ``fit``'s keywords.

    Raises:
        TrainingConfigError: A setting differs; the message names each, saved and given.
    """
    names = set(saved) - set(may_change)  # what the run recorded (older runs record less)
    changed = sorted(name for name in names if saved.get(name) != given.get(name))
    if not changed:
        return
    differences = "; ".join(
        f"{name}: saved {saved.get(name)!r}, given {given.get(name)!r}" for name in changed
    )
    word = _CLI_WORDS if cli else _PYTHON_WORDS
    allowed = (
        f" Only {', '.join(sorted(may_change))} and the output options may change." if cli else ""
    )
    raise TrainingConfigError(
        f"{word['resume']} with settings that differ from the run saved in {run_dir} "
        f"({differences}); give the saved values to resume it, or start a new run "
        f"({word['overwrite']} or another {word['output_dir']}).{allowed}"
    )


def saved_settings(run_dir: Path, name: str) -> dict[str, Any] | None:
    """The JSON file ``name`` of the run (``settings.json``), or None where it has none."""
    path = run_dir / name
    return read_json(path) if path.is_file() else None


def clear_run(output_dir: Path) -> None:
    """Delete what a run writes (``last/``, ``best/``, ``history.json``, ``settings.json``)
    for ``overwrite=True``; other files in ``output_dir`` are left alone."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for entry in output_dir.iterdir():
        if entry.name in RUN_ENTRIES:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def write_run_json(run_dir: Path, name: str, data: Mapping[str, Any]) -> None:
    """Write ``run_dir/name`` (``history.json``, ``settings.json``) atomically, replacing it."""
    write_files(
        run_dir,
        lambda staging: dump_json(dict(data), staging / name),
        overwrite=True,
        what="fit",
        exclusive=False,
    )


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

    write_files(directory, write, overwrite=True, what="fit")


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
    needed = [directory / CONFIG_FILE] if is_vit else []
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
