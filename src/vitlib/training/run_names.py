"""The folders the commands write into when not told: named after the data, numbered when taken.

``vitlib train --data data/flowers`` saves into ``runs/flowers``, the next such run into
``runs/flowers-2``, then ``runs/flowers-3``...; ``vitlib evaluate RUN`` into ``RUN/evaluation``,
then ``RUN/evaluation-2``... A folder is taken when it holds anything but a run's lock file.
`claim_run_dir` takes the first free one under its lock, so that two commands started at once
never pick the same folder.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Final

from vitlib.training.distributed import broadcast_text, on_main_rank
from vitlib.training.errors import RunInProgressError
from vitlib.training.run_lock import LOCK_FILE, hold_lock

__all__ = [
    "RUNS_FOLDER",
    "candidates",
    "claim_run_dir",
    "data_name",
    "default_run_dir",
    "first_free",
    "latest_numbered",
    "numbered",
    "taken",
]

#: Where the commands put their runs by default, relative to the working directory.
RUNS_FOLDER: Final = Path("runs")


def data_name(data: Path | None) -> str:
    """The name a run takes from its data: the data folder's own name (``"."`` resolved), or
    ``"digits"`` for the embedded digits (``data=None``)."""
    if data is None:
        return "digits"
    return Path(data).resolve().name or "data"


def default_run_dir(data: Path | None, suffix: str = "") -> Path:
    """``runs/<data name><suffix>``: ``runs/digits``, ``runs/flowers``,
    ``runs/flowers-finetune``."""
    return RUNS_FOLDER / f"{data_name(data)}{suffix}"


def numbered(base: Path, number: int) -> Path:
    """``base`` itself for 1, else ``base-<number>``: ``runs/flowers-2``."""
    return base if number == 1 else base.with_name(f"{base.name}-{number}")


def candidates(base: Path) -> Iterator[Path]:
    """``base``, ``base-2``, ``base-3``... without end."""
    return (numbered(base, number) for number in itertools.count(1))


def taken(folder: Path) -> bool:
    """Whether ``folder`` exists and is no empty folder (a run's lock file aside)."""
    if not folder.exists() and not folder.is_symlink():
        return False
    if not folder.is_dir():
        return True
    return any(entry.name != LOCK_FILE for entry in folder.iterdir())


def first_free(base: Path) -> Path:
    """The first of ``base``, ``base-2``... that is not `taken` (no lock is taken: for a
    report folder, which is written in one go; a run uses ``claim_run_dir``)."""
    return next(folder for folder in candidates(base) if not taken(folder))


def latest_numbered(base: Path) -> Path:
    """The highest-numbered of ``base``, ``base-2``... that exists (``base`` if none does): the
    folder ``--resume`` and ``--overwrite`` mean when no folder is named."""
    pattern = re.compile(rf"{re.escape(base.name)}(?:-([2-9]|[1-9][0-9]+))?")
    numbers = [1]
    if base.parent.is_dir():
        for entry in base.parent.iterdir():
            match = pattern.fullmatch(entry.name)
            if match and entry.is_dir():
                numbers.append(int(match.group(1) or 1))
    return numbered(base, max(numbers))


@contextmanager
def claim_run_dir(base: Path, *, cli: bool = False) -> Iterator[Path]:
    """Hold the lock of the first free folder of ``base``, ``base-2``... and yield it.

    A folder is looked at, then locked, then looked at again: one that another command locked
    or filled meanwhile is passed over, so commands started at once each get their own. Under
    ``torchrun`` rank 0 alone claims (a collective, as `vitlib.training.run_lock.run_lock`) and
    every rank receives its folder.

    Raises:
        CheckpointError, PermissionError, SaveError: As ``run_lock``: a folder cannot be made
            or locked.
    """
    with ExitStack() as stack:
        claimed: list[Path] = []

        def claim() -> None:
            for folder in candidates(base):
                if taken(folder):
                    continue
                try:
                    held = stack.enter_context(ExitStack())
                    held.enter_context(hold_lock(folder, cli))
                except RunInProgressError:
                    continue
                if taken(folder):  # filled between the look and the lock
                    held.close()
                    continue
                claimed.append(folder)
                return

        on_main_rank(claim)
        yield Path(broadcast_text(str(claimed[0]) if claimed else None) or base)
