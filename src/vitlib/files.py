"""Every file vitlib reads or writes goes through here: regular files of bounded size on the way
in, one atomic writer on the way out.

[`write_files`][vitlib.files.write_files] is behind checkpoints, a run's files, reports, plots,
ONNX exports and downloads: new files go to ``folder/.vitlib-save-partial/``, renamed to
``.vitlib-save-complete/`` (the commit point), then each moves over its namesake; the next write
or load finishes a cut-off one ([`recover_interrupted_save`][vitlib.files.recover_interrupted_save];
docs/reliability.md states the guarantees). A write that fails for lack of room or a failing
file system (a full disk, a file-size limit or quota, a read-only or failing file system) raises
[`SaveError`][vitlib.errors.SaveError] naming the folder, whichever writer failed (Python,
safetensors or ``torch.save``); the folder keeps what it held.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from safetensors import SafetensorError

from vitlib._checks import check_bool, check_type
from vitlib.errors import CheckpointError, SaveError

__all__ = [
    "COMPLETE",
    "MAX_JSON_BYTES",
    "PARTIAL",
    "STORAGE_ERRNOS",
    "check_regular_file",
    "dump_json",
    "explained_os_errors",
    "missing",
    "read_json",
    "recover_interrupted_save",
    "write_files",
]

PARTIAL: Final = ".vitlib-save-partial"
COMPLETE: Final = ".vitlib-save-complete"
#: Largest JSON file read (Hugging Face configs with 21k labels are about 1 MiB).
MAX_JSON_BYTES: Final = 16 * 2**20
#: The operating system's codes for "the bytes could not be stored": disk full, file too large
#: (a file-size limit, ``ulimit -f``), disk quota exceeded, read-only file system, I/O error.
STORAGE_ERRNOS: Final = frozenset(
    code
    for code in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", None), errno.EROFS, errno.EIO)
    if code is not None
)


def write_files(
    folder: str | os.PathLike[str],
    write: Callable[[Path], None],
    *,
    overwrite: bool,
    what: str = "save_pretrained",
    exclusive: bool = True,
    owned: Collection[str] = (),
    wait: bool = False,
) -> Path:
    """Create ``folder`` if needed and replace the files ``write(staging)`` produces, at once.

    Args:
        folder: The destination folder (created with its parents if missing).
        write: Writes the new files into the empty folder it is given (flat, no sub-folders).
        overwrite: Allow replacing what is there (see ``exclusive``); without it nothing is
            replaced and nothing is written.
        what: The caller's name, for messages.
        exclusive: ``folder`` is the product (a checkpoint, a report): a folder that holds
            anything is refused without ``overwrite``. Otherwise ``folder`` merely holds the
            files (a run folder, a cache, the folder of an ONNX file or a plot): only a file
            about to be replaced is refused without ``overwrite``.
        owned: Names of files this product may hold: those the new ``write`` does not produce
            are removed (a new report does not keep the old report's extra picture).
        wait: Wait for another process writing into ``folder`` instead of refusing at once.

    Returns:
        ``folder`` as a ``Path``.

    Raises:
        FileExistsError: What would be replaced exists and ``overwrite`` is False (nothing
            written).
        NotADirectoryError: ``folder`` (or a parent) is a file.
        PermissionError: ``folder`` cannot be created or written; the message names it.
        SaveError: The files could not be stored (disk full, file-size limit, quota, read-only
            or failing file system), whether ``write`` or vitlib failed; nothing in ``folder``
            was replaced, and the message names it.
        CheckpointError: Another process is writing into ``folder`` at this moment.
    """
    # the public callers (save_pretrained, EvaluationReport.save) call the folder "directory"
    check_type("directory", folder, (str, os.PathLike), "a folder path (str or os.PathLike)")
    check_bool("overwrite", overwrite)
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(
            errno.ENOTDIR,
            f"{folder} is a file; {what} needs a folder path (new, empty, or with "
            f"overwrite=True an existing folder of its own)",
            str(folder),
        )
    with explained_os_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder, wait=wait):
            recover_interrupted_save(folder, locked=True)
            if exclusive and not overwrite and any(folder.iterdir()):
                raise FileExistsError(
                    errno.EEXIST,
                    f"{folder} already exists and is not empty; nothing was written. Choose a "
                    f"new folder, or pass overwrite=True to replace the files {what} writes "
                    f"(other files there are kept)",
                    str(folder),
                )
            staging = folder / PARTIAL
            staging.mkdir()
            try:
                write(staging)
                _apply_umask(staging)
                _refuse_replacing(folder, staging, what, overwrite=overwrite)
            except BaseException as error:
                shutil.rmtree(staging, ignore_errors=True)
                failure = _storage_failure(folder, error)
                if failure is None:
                    raise
                raise failure from error
            written = {entry.name for entry in staging.iterdir()}
            os.replace(staging, folder / COMPLETE)
            for stale in set(owned) - written:
                (folder / stale).unlink(missing_ok=True)
            _move_into_place(folder)
    return folder


def recover_interrupted_save(folder: str | os.PathLike[str], *, locked: bool = False) -> bool:
    """Finish or undo a write into ``folder`` that was cut off.

    The complete new files of ``.vitlib-save-complete`` are moved into place; a
    ``.vitlib-save-partial`` is deleted (the old files were never touched).

    Args:
        folder: A folder that [`write_files`][vitlib.files.write_files] wrote into (any folder
            is fine).
        locked: The caller already holds the folder's lock.

    Returns:
        Whether anything was changed.

    Raises:
        CheckpointError: The folder cannot be repaired (read-only, or another process is writing
            into it); the message names the staging folder that holds the complete files.
    """
    folder = Path(folder)
    partial, complete = folder / PARTIAL, folder / COMPLETE
    if not (_is_real_dir(partial) or _is_real_dir(complete)):
        return False
    if not locked:
        with _locked(folder, wait=False):
            return recover_interrupted_save(folder, locked=True)
    try:
        if _is_real_dir(partial):
            shutil.rmtree(partial)
        if _is_real_dir(complete):
            _move_into_place(folder)
    except OSError as error:
        raise CheckpointError(
            f"a write into {folder} was interrupted and cannot be finished ({error}); the "
            f"complete new files are in {complete} (if it exists), the previous ones in {folder}. "
            f"Make the folder writable and load or save again, or move the files by hand."
        ) from error
    return True


def dump_json(data: Mapping[str, Any] | list[Any], path: Path) -> None:
    """Write ``data`` as indented JSON to ``path`` (inside a staging folder). NaN and infinity
    are refused (``ValueError``): strict JSON parsers reject them."""
    path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def missing(path: Path) -> str:
    """Why nothing readable is at ``path``, for messages: "does not exist", or, for a symbolic
    link that leads nowhere, that it is one (broken, or a loop of links)."""
    if path.is_symlink():
        return "is a symbolic link that leads nowhere (to a missing path, or in a loop of links)"
    return "does not exist"


def check_regular_file(path: Path) -> int:
    """Return the size of ``path`` if it is a regular file (after symbolic links), else raise.

    FIFOs, devices (``/dev/zero``) and sockets are refused before they are opened, since reading
    them could block forever or never end.

    Raises:
        FileNotFoundError: Nothing is at ``path`` (or a symbolic link there is dangling).
        CheckpointError: ``path`` is a folder, FIFO, device or socket.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            errno.ENOENT, f"the checkpoint file {path} {missing(path)}; check the path", str(path)
        ) from error
    except OSError as error:  # a symbolic-link loop, a path through a file...
        raise CheckpointError(f"cannot open {path} ({error.strerror}); check the path.") from error
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        if stat.S_ISFIFO(info.st_mode):
            kind = "a FIFO (named pipe)"
        elif stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
            kind = "a device"
        raise CheckpointError(
            f"{path} is {kind}; vitlib reads checkpoints from regular files only. Point it at "
            f"the checkpoint file itself."
        )
    return info.st_size


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object of at most ``MAX_JSON_BYTES`` from a regular file.

    Raises:
        CheckpointError: The file is not regular, too large, not UTF-8, not JSON (or nested too
            deeply), or not an object; the message names the file.
    """
    size = check_regular_file(path)
    if size > MAX_JSON_BYTES:
        raise CheckpointError(
            f"{path} is {size:,} bytes, more than the {MAX_JSON_BYTES:,} bytes a config.json may "
            f"have; it is not a model config."
        )
    try:
        with open(path, "rb") as file:
            text = file.read(MAX_JSON_BYTES + 1).decode("utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"cannot read {path} as JSON ({error}).") from error
    except RecursionError as error:
        raise CheckpointError(
            f"cannot read {path} as JSON: it is nested too deeply to be a model config."
        ) from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(data).__name__}.")
    return data


def _refuse_replacing(folder: Path, staging: Path, what: str, *, overwrite: bool) -> None:
    """Refuse, before the commit, a new file whose name is taken: by a folder always (a file
    never replaces a folder), by a file unless ``overwrite``."""
    for entry in sorted(staging.iterdir()):
        target = folder / entry.name
        if target.is_dir() and not target.is_symlink():
            raise IsADirectoryError(
                errno.EISDIR,
                f"{target} is a folder, where {what} would write a file; nothing was written. "
                "Move or rename the folder, or choose another name",
                str(target),
            )
        if not overwrite and (target.exists() or target.is_symlink()):
            raise FileExistsError(
                errno.EEXIST,
                f"{target} already exists; nothing was written. Pass overwrite=True to "
                f"replace it, or choose another name",
                str(target),
            )


def _move_into_place(folder: Path) -> None:
    complete = folder / COMPLETE
    for entry in sorted(complete.iterdir()):
        os.replace(entry, folder / entry.name)
    complete.rmdir()


def _apply_umask(staging: Path) -> None:
    """Give the new files the mode a plain ``open`` would (some writers, such as safetensors,
    create them private): 0644 under umask 022."""
    mode = 0o666 & ~_umask()
    for entry in staging.iterdir():
        if entry.is_file() and not entry.is_symlink():
            entry.chmod(mode)


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


@contextmanager
def _locked(folder: Path, *, wait: bool) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``folder`` (POSIX); refuse at once unless ``wait``."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks on folders
        yield
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise CheckpointError(
                f"another process is writing into {folder} right now; wait for it to finish, or "
                f"write into another folder."
            ) from error
        yield
    finally:
        os.close(descriptor)


@contextmanager
def explained_os_errors(folder: Path) -> Iterator[None]:
    """Re-raise the operating system's errors of writing into ``folder`` with the user's folder
    named, not vitlib's temporaries: permission and path errors as their own kind, a full disk or
    another storage failure as [`SaveError`][vitlib.errors.SaveError]."""
    try:
        yield
    except (PermissionError, NotADirectoryError, IsADirectoryError) as error:
        raise type(error)(
            error.errno,
            f"cannot write into {folder} ({error.strerror}); the files there are as they were. "
            f"Choose a folder you can write to, or fix its permissions",
            str(folder),
        ) from error
    except OSError as error:
        failure = _storage_failure(folder, error)
        if failure is None:
            raise
        raise failure from error


def _storage_failure(folder: Path, error: BaseException) -> SaveError | None:
    """The [`SaveError`][vitlib.errors.SaveError] to raise for ``error``, a writer's failure in
    ``folder``, when it is a failure to store the bytes; ``None`` for any other error (raised as
    it is).

    Python reports those as an ``OSError`` with one of ``STORAGE_ERRNOS``, safetensors as a
    ``SafetensorError`` "I/O error ... (os error N)", ``torch.save`` as a ``RuntimeError`` of its
    zip writer (``inline_container.cc``, ``PytorchStreamWriter``) that gives no code.
    """
    if isinstance(error, SaveError):  # already explained (by a nested write)
        return None
    text = str(error)
    code: int | None
    if isinstance(error, OSError):
        if error.errno not in STORAGE_ERRNOS:
            return None
        code, reason = error.errno, error.strerror or text
    elif isinstance(error, SafetensorError) and "I/O error" in text:
        found = re.search(r"os error (\d+)", text)
        code = int(found.group(1)) if found else None
        reason = os.strerror(code) if code is not None else text
    elif isinstance(error, RuntimeError) and (
        "inline_container" in text or "PytorchStreamWriter" in text
    ):
        code, reason = None, f"torch.save could not write its file whole; {_likely_cause(folder)}"
    else:
        return None
    return SaveError(
        code,
        f"cannot write into {folder}: {reason}; nothing there was replaced, its files are as they "
        f"were. Free some space (or raise the file-size limit or quota, or choose a writable "
        f"folder) and save again",
        str(folder),
    )


def _likely_cause(folder: Path) -> str:
    """Why a write whose error gives no code most likely failed: a full disk or a size limit."""
    try:
        if shutil.disk_usage(folder).free < 2**20:
            return "the disk is full"
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows: no file-size limits
        return "the disk is probably full"
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        return f"probably a file reached the file-size limit of {limit:,} bytes (ulimit -f)"
    return "the disk is probably full"
