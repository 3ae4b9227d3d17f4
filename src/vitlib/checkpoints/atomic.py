"""Write the files of a checkpoint into a folder all at once, touching nothing else there.

The one writer behind [`vitlib.save_pretrained`][vitlib.checkpoints.save_pretrained],
``vitlib convert`` and the ``last/`` and ``best/`` folders of
[`vitlib.training.fit`][vitlib.training.fit]. A save into ``folder``:

1. writes every new file into ``folder/.vitlib-save-partial/``;
2. renames that to ``folder/.vitlib-save-complete/`` (the commit point: the new files are whole);
3. moves each file over its namesake in ``folder`` and removes the empty staging folder.

Only the files being written are replaced: other files in ``folder`` are never deleted, and the
folder itself is never renamed, so ``"."`` and a symbolic link to a folder work (the link is
written through). Folders and files get the modes a plain ``mkdir`` and ``open`` would give them
(0755 and 0644 under umask 022).

A save cut off (killed, power lost) before step 2 leaves the old files whole; one cut off after
step 2 leaves the new files whole in the staging folder. The next save into the folder, or the
next load from it, finishes the job:
[`recover_interrupted_save`][vitlib.checkpoints.atomic.recover_interrupted_save] drops a partial
staging folder and completes a committed one, so no hidden folder outlives the next use.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from vitlib.errors import CheckpointError

__all__ = ["COMPLETE", "PARTIAL", "recover_interrupted_save", "write_files_atomically"]

PARTIAL: Final = ".vitlib-save-partial"
COMPLETE: Final = ".vitlib-save-complete"


def write_files_atomically(
    folder: str | os.PathLike[str],
    write: Callable[[Path], None],
    *,
    overwrite: bool,
    what: str = "save_pretrained",
) -> Path:
    """Create ``folder`` if needed and replace the files ``write(staging)`` produces, at once.

    Args:
        folder: The destination folder (created with its parents if missing).
        write: Writes the new files into the empty folder it is given (flat, no sub-folders).
        overwrite: Allow a ``folder`` that already holds files; without it such a folder is
            refused and nothing is written.
        what: The caller's name, for messages.

    Returns:
        ``folder`` as a ``Path``.

    Raises:
        FileExistsError: ``folder`` is not empty and ``overwrite`` is False (nothing written).
        NotADirectoryError: ``folder`` (or a parent) is a file.
        PermissionError: ``folder`` cannot be created or written; the message names it.
        CheckpointError: Another process is saving into ``folder`` at this moment.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(
            errno.ENOTDIR,
            f"{folder} is a file; {what} needs a folder path (new, empty, or with "
            f"overwrite=True an existing checkpoint folder)",
            str(folder),
        )
    with _explained_os_errors(folder):
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder):
            recover_interrupted_save(folder, locked=True)
            if not overwrite and any(folder.iterdir()):
                raise FileExistsError(
                    errno.EEXIST,
                    f"{folder} already exists and is not empty; nothing was written. Choose a "
                    f"new folder, or pass overwrite=True to replace the checkpoint files in it "
                    f"(other files there are kept)",
                    str(folder),
                )
            staging = folder / PARTIAL
            staging.mkdir()
            try:
                write(staging)
                _apply_umask(staging)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            os.replace(staging, folder / COMPLETE)
            _move_into_place(folder)
    return folder


def recover_interrupted_save(folder: str | os.PathLike[str], *, locked: bool = False) -> bool:
    """Finish or undo a save into ``folder`` that was cut off.

    A committed staging folder (``.vitlib-save-complete``) holds complete new files: they are
    moved into place. A partial one (``.vitlib-save-partial``) is deleted; the old files were never
    touched.

    Args:
        folder: A folder that
            [`write_files_atomically`][vitlib.checkpoints.atomic.write_files_atomically] wrote
            into (any folder is fine).
        locked: The caller already holds the folder's save lock.

    Returns:
        Whether anything was changed.

    Raises:
        CheckpointError: The folder cannot be repaired (read-only, or another process is saving
            into it); the message names the staging folder that holds the complete checkpoint.
    """
    folder = Path(folder)
    partial, complete = folder / PARTIAL, folder / COMPLETE
    if not (_is_real_dir(partial) or _is_real_dir(complete)):
        return False
    if not locked:
        with _locked(folder):
            return recover_interrupted_save(folder, locked=True)
    try:
        if _is_real_dir(partial):
            shutil.rmtree(partial)
        if _is_real_dir(complete):
            _move_into_place(folder)
    except OSError as error:
        raise CheckpointError(
            f"a save into {folder} was interrupted and cannot be finished ({error}); the "
            f"complete new files are in {complete} (if it exists), the previous ones in {folder}. "
            f"Make the folder writable and load or save again, or move the files by hand."
        ) from error
    return True


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
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``folder`` (POSIX), refusing to wait for another."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks on folders
        yield
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise CheckpointError(
                f"another process is saving into {folder} right now; wait for it to finish, or "
                f"save into another folder."
            ) from error
        yield
    finally:
        os.close(descriptor)


@contextmanager
def _explained_os_errors(folder: Path) -> Iterator[None]:
    """Re-raise permission and path errors with the user's folder named, not our temporaries."""
    try:
        yield
    except (PermissionError, NotADirectoryError) as error:
        raise type(error)(
            error.errno,
            f"cannot write the checkpoint into {folder} ({error.strerror}); the files there are "
            f"as they were. Choose a folder you can write to, or fix its permissions",
            str(folder),
        ) from error
