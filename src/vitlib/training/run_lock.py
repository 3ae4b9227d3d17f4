"""The lock of a run directory: one run at a time in a folder, for the whole run.

[`fit`][vitlib.training.fit] (and ``vitlib train`` / ``vitlib finetune``, for the whole command)
holds ``<output_dir>/.vitlib-run.lock`` from before it looks at the folder until it returns. The
file names its holder (process id, host, start time, command); a second run into the same folder
is refused with a [`RunInProgressError`][vitlib.training.RunInProgressError] naming it. A lock
left by a process that no longer runs (killed, crashed, the machine rebooted) is taken over,
with a warning that says so. Under ``torchrun`` rank 0 alone holds it.

The lock is an advisory POSIX record lock (``fcntl.lockf``) on that file: the kernel drops it
when its process ends, however it ends, and it holds on network file systems that support locks
(NFS). Where there are no such locks (Windows, some file systems) the file's contents alone
decide. It is the one file vitlib writes outside [`write_files`][vitlib.files.write_files]:
the lock must stay on the file it was taken on, which an atomic replacement would swap. It is
deleted when the run ends; [`vitlib.files`][vitlib.files]' own per-save lock is on the folder,
a different file, so the two never wait for each other.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import stat
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from vitlib.errors import CheckpointError
from vitlib.files import explained_os_errors
from vitlib.training.distributed import on_main_rank
from vitlib.training.errors import RunInProgressError

__all__ = ["LOCK_FILE", "LockHolder", "hold_lock", "run_lock"]

logger = logging.getLogger("vitlib.training")

#: The lock file inside the run directory.
LOCK_FILE: Final = ".vitlib-run.lock"
#: Largest lock file read (its JSON is about 300 bytes).
_MAX_LOCK_BYTES: Final = 4096
#: How often to re-open a lock file that was replaced under us (its holder ended meanwhile).
_ATTEMPTS: Final = 5


@dataclass(frozen=True)
class LockHolder:
    """The process holding a run's lock, as its lock file records it.

    Attributes:
        pid: Its process id.
        host: The host name of its machine.
        started: When it took the lock (ISO 8601, local time with offset).
        command: Its command line.
        boot_id: The Linux boot id of its machine (a reboot ends every process), if known.
        start_ticks: Its start time in clock ticks since boot (Linux), which tells it from a
            later process given the same id.
    """

    pid: int
    host: str
    started: str
    command: str
    boot_id: str | None = None
    start_ticks: int | None = None

    @classmethod
    def this_process(cls) -> LockHolder:
        """The record of the calling process."""
        process = _process_stat(os.getpid())
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            started=datetime.now().astimezone().isoformat(timespec="seconds"),
            command=_command_line(),
            boot_id=_boot_id(),
            start_ticks=None if process is None else process[1],
        )

    @classmethod
    def parse(cls, data: bytes) -> LockHolder | None:
        """The holder recorded in ``data`` (a lock file's bytes), or None if it records none."""
        try:
            fields: Any = json.loads(data.decode("utf-8"))
            holder = cls(**fields)
        except (ValueError, TypeError):  # not JSON, not an object, other keys
            return None
        valid = (
            isinstance(holder.pid, int)
            and holder.pid > 0
            and all(isinstance(text, str) for text in (holder.host, holder.started, holder.command))
        )
        return holder if valid else None

    def describe(self) -> str:
        """``"process 1234 on host gpu-7, started 2026-12-01T10:00:00+00:00 (vitlib train ...)"``"""
        return f"process {self.pid} on host {self.host}, started {self.started} ({self.command})"

    def running(self) -> bool | None:
        """Whether the holder still runs: ``None`` when that cannot be told (another host)."""
        if self.host != socket.gethostname():
            return None
        boot = _boot_id()
        if self.boot_id is not None and boot is not None and self.boot_id != boot:
            return False  # the machine rebooted since
        if os.name == "nt":  # os.kill(pid, 0) would send Ctrl-C there
            return None
        process = _process_stat(self.pid)
        if process is not None:
            state, ticks = process
            reused = self.start_ticks is not None and ticks != self.start_ticks
            return state not in ("Z", "X") and not reused  # a zombie has ended
        try:
            os.kill(self.pid, 0)  # signal 0: only asks whether the process exists
        except ProcessLookupError:
            return False
        except PermissionError:  # it exists, owned by another user
            return True
        return True


@dataclass
class _Held:
    """A lock this process holds: the thread that took it and how many times (``pid``: a child
    forked while it was held inherits the record, not the lock)."""

    thread: int
    pid: int
    depth: int = 1


_HELD: dict[tuple[int, int], _Held] = {}
_HELD_GUARD = threading.Lock()


@contextmanager
def run_lock(run_dir: Path, *, cli: bool = False) -> Iterator[None]:
    """Hold the lock of ``run_dir`` for the ``with`` block (created with its parents if
    missing; the folders created are removed again if they are left empty).

    Under ``torchrun`` every rank calls it (it is a collective) and rank 0 alone holds the lock;
    if rank 0 cannot take it, every rank raises. Re-entrant within a thread: the command holds
    it for its whole run, and the ``fit`` inside takes it again.

    Args:
        run_dir: The run directory.
        cli: Name the command's flags in messages (``--output-dir``) instead of ``fit``'s
            keywords.

    Raises:
        RunInProgressError: Another process (or another thread of this one) holds it; the
            message names the holder and the ways out.
        NotADirectoryError: ``run_dir`` is a file.
        CheckpointError: Its lock file is a link, a pipe or a folder (never written through).
        PermissionError, SaveError: The folder or its lock file cannot be written.
    """
    with ExitStack() as stack:
        on_main_rank(lambda: stack.enter_context(hold_lock(Path(run_dir), cli)))
        yield


@contextmanager
def hold_lock(run_dir: Path, cli: bool) -> Iterator[None]:
    """Hold ``run_dir``'s lock in this process (re-entrant within the thread); `run_lock`
    without its collective, for code that runs on rank 0 alone.

    Raises:
        RunInProgressError, NotADirectoryError, CheckpointError, PermissionError, SaveError: As
            `run_lock`.
    """
    created = _make_folders(run_dir, cli)
    try:
        key = _folder_key(run_dir)
        with _HELD_GUARD:
            held = _HELD.get(key)
            if held is not None and held.pid != os.getpid():
                held = None
            if held is not None and held.thread != threading.get_ident():
                raise RunInProgressError(
                    f"{run_dir} is in use by another run of this process (pid {os.getpid()}, "
                    f"another thread); wait for it to finish, or choose another "
                    f"{_output_dir(cli)}."
                )
            if held is not None:
                held.depth += 1
        if held is not None:
            try:
                yield
            finally:
                held.depth -= 1
            return
        descriptor = _acquire(run_dir, cli)
        with _HELD_GUARD:
            _HELD[key] = _Held(threading.get_ident(), os.getpid())
        try:
            yield
        finally:
            with _HELD_GUARD:
                del _HELD[key]
            _release(descriptor, run_dir / LOCK_FILE)
    finally:
        for folder in reversed(created):
            try:
                folder.rmdir()  # only if the run left it empty
            except OSError:
                break


def _acquire(run_dir: Path, cli: bool) -> int:
    """Open and lock ``run_dir``'s lock file, take it over if its holder is gone, and write this
    process into it; return its descriptor, which holds the lock until closed."""
    path = run_dir / LOCK_FILE
    for _ in range(_ATTEMPTS):
        with explained_os_errors(run_dir):
            descriptor = _open(path)
        try:
            try:
                locked = _lock(descriptor)
            except BlockingIOError:
                raise _in_progress(
                    path, LockHolder.parse(_read(descriptor)), cli, busy=True
                ) from None
            if not _same_file(descriptor, path):
                os.close(descriptor)  # its holder deleted it on the way out: open the new one
                continue
            _check_holder(path, _read(descriptor), locked, cli)
            with explained_os_errors(run_dir):
                _write(descriptor, LockHolder.this_process())
        except BaseException:
            os.close(descriptor)
            raise
        return descriptor
    raise RunInProgressError(  # in practice unreachable: the lock file changed five times
        f"{path} keeps being replaced by other processes; wait for the other runs into "
        f"{run_dir} to settle, or choose another {_output_dir(cli)}."
    )


def _open(path: Path) -> int:
    """Open (or create) the lock file, never through a symbolic link: a link planted there would
    have vitlib overwrite the file it points to."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as error:
        if error.errno not in (errno.ELOOP, errno.EISDIR):  # a link, a folder
            raise
        descriptor = -1
    if descriptor >= 0 and stat.S_ISREG(os.fstat(descriptor).st_mode):
        return descriptor
    if descriptor >= 0:
        os.close(descriptor)
    raise CheckpointError(
        f"{path} is not a regular file (a link, a pipe...); vitlib keeps the run's lock in a "
        "file of that name. Move it away (nothing of the run is in it) and start again."
    )


def _lock(descriptor: int) -> bool:
    """Lock ``descriptor`` without waiting: True once locked, False where the file system has no
    locks; ``BlockingIOError`` while another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        return False
    try:
        fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EAGAIN):
            raise BlockingIOError(error.errno, "locked by another process") from error
        return False  # ENOLCK, EOPNOTSUPP...: no locks on this file system
    return True


def _check_holder(path: Path, data: bytes, locked: bool, cli: bool) -> None:
    """Refuse while the holder recorded in ``data`` runs; take over (with a warning) a lock it
    left behind. ``locked``: this process holds the kernel lock on the file."""
    if not data.strip():
        return  # new (or left before its holder wrote anything)
    holder = LockHolder.parse(data)
    if holder is None:
        if not locked:  # without a kernel lock a crashed writer looks like a slow one
            raise _in_progress(path, None, cli, busy=False)
        logger.warning("%s is unreadable (left by a run that crashed); taking it over", path)
        return
    running = holder.running()
    ours = holder.pid == os.getpid() and holder.host == socket.gethostname()
    if running is False or ours:  # ours: left by this process, which no longer holds it
        logger.warning(
            "taking over the lock of %s: it was left by %s, which no longer runs (killed or "
            "crashed); resume its run with %s if it saved an epoch",
            path.parent,
            holder.describe(),
            "--resume" if cli else "resume=True",
        )
        return
    raise _in_progress(path, holder, cli, busy=False)


def _in_progress(
    path: Path, holder: LockHolder | None, cli: bool, *, busy: bool
) -> RunInProgressError:
    """The refusal naming ``holder`` and the ways out; ``busy``: the kernel says a live process
    holds the lock (whatever the file records)."""
    running = None if holder is None else holder.running()
    # busy with a record of an ended process: the holder has not written its own record yet
    known = holder is not None and (running or not busy)
    who = holder.describe() if holder is not None and known else "another process"
    fix = f"wait for it to finish, or choose another {_output_dir(cli)}"
    if holder is not None and running:
        fix = f"wait for it to finish (or stop it: kill {holder.pid}), or choose another " + (
            _output_dir(cli)
        )
    elif not busy:  # nothing but the file says a run is going on
        fix += f"; if no run is going on there any more, delete {path}"
    return RunInProgressError(
        f"another run is in progress in {path.parent}: {who} holds its lock ({path}); nothing "
        f"was changed. To train there, {fix}."
    )


def _read(descriptor: int) -> bytes:
    os.lseek(descriptor, 0, os.SEEK_SET)
    return os.read(descriptor, _MAX_LOCK_BYTES)


def _write(descriptor: int, holder: LockHolder) -> None:
    data = json.dumps(asdict(holder), allow_nan=False).encode("utf-8")
    os.ftruncate(descriptor, 0)
    os.lseek(descriptor, 0, os.SEEK_SET)
    while data:
        data = data[os.write(descriptor, data) :]
    os.fsync(descriptor)


def _release(descriptor: int, path: Path) -> None:
    """Delete the lock file (if it is still ours), then drop the lock."""
    try:
        if _same_file(descriptor, path):
            path.unlink()
    except OSError:  # a read-only folder now: the next run sees a lock whose holder ended
        pass
    finally:
        os.close(descriptor)


def _same_file(descriptor: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``descriptor``."""
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (on_disk.st_dev, on_disk.st_ino) == (opened.st_dev, opened.st_ino)


def _make_folders(run_dir: Path, cli: bool) -> list[Path]:
    """Create ``run_dir`` and its missing parents; return those created, outermost first."""
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(
            errno.ENOTDIR,
            f"{_output_dir(cli)} {run_dir} is a file; expected a directory. Pick another path",
            str(run_dir),
        )
    missing = [folder for folder in (run_dir, *run_dir.parents) if not folder.exists()]
    with explained_os_errors(run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


def _folder_key(folder: Path) -> tuple[int, int]:
    info = os.stat(folder)
    return info.st_dev, info.st_ino


def _output_dir(cli: bool) -> str:
    return "--output-dir" if cli else "output_dir"


def _command_line() -> str:
    """This process's command, shortened: ``vitlib train ...``, ``python -m vitlib train ...``,
    ``train.py ...``."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    name = f"python -m {program.parent.name}" if program.name == "__main__.py" else program.name
    return " ".join([name, *sys.argv[1:]])[:300]


def _boot_id() -> str | None:
    """This boot of the machine (Linux), or None where the system does not tell."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _process_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start ticks)`` of process ``pid`` from ``/proc`` (Linux); None if it has no
    entry there (ended, or not Linux)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces
    try:
        return fields[0], int(fields[19])  # fields 3 (state) and 22 (starttime) of proc(5)
    except (IndexError, ValueError):
        return None
