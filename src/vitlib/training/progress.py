"""Progress: a tqdm bar on a terminal when tqdm is installed (``vitlib[progress]``), else lines.

What a pass shows depends on where its output goes:

- a terminal (or a notebook) with tqdm: a bar, redrawn in place, with the running metrics;
- a terminal without tqdm: a few lines per pass (``epoch 3 train 40/200 loss=...``);
- anything else (a file, a pipe, a CI log): nothing per batch, so that a log holds no ``\\r``
  frames; the per-epoch line that ``fit`` reports is the one line an epoch gets (a program that
  logs ``vitlib.training`` at DEBUG also gets the lines per batch).

Lines go through the ``vitlib.training`` logger when the program has configured logging, so it
decides what shows and where; a program that has not (where Python would drop them) gets them
printed on stdout, above any progress bar. Under ``torchrun`` only rank 0 shows anything, so
that each line and bar appears once, not once per process (`is_main_process`).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from vitlib.training.distributed import current_context

logger = logging.getLogger("vitlib.training")

_LOG_LINES_PER_EPOCH = 5
_BAR_REFRESH_S = 0.5


def is_main_process() -> bool:
    """Whether this process is the one that reports: rank 0 of a ``torchrun`` job, or the only
    process.

    The rank is the process group's once it is joined, and before that the ``RANK`` variable
    that ``torchrun`` sets for each process (so that the command line can tell before training
    starts); without either, or with a ``RANK`` that is not a number, this is the main process,
    so that nothing is hidden by mistake.
    """
    context = current_context()
    if context.enabled:
        return context.is_main
    rank = os.environ.get("RANK", "").strip()
    return not rank.isdigit() or int(rank) == 0


def is_terminal(stream: TextIO | None) -> bool:
    """Whether ``stream`` is an interactive terminal (``False`` for a file, a pipe, a closed or
    missing stream, or an object without ``isatty``)."""
    try:
        return stream is not None and bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def report(message: str, *args: object) -> None:
    """Show one progress line, ``message % args``, from rank 0 only.

    Logged at INFO on ``vitlib.training`` if any handler is configured (``logging.basicConfig``,
    a framework's setup, pytest's capture); otherwise printed to stdout, through ``tqdm.write``
    when tqdm is installed so that a bar on the terminal is not broken.
    """
    if not is_main_process():
        return
    if logger.hasHandlers():
        logger.info(message, *args)
        return
    line = message % args if args else message
    try:
        from tqdm.auto import tqdm
    except ImportError:
        print(line, file=sys.stdout, flush=True)
    else:
        tqdm.write(line, file=sys.stdout)


class Progress:
    """Report one pass over a loader, batch by batch, as the module docstring says.

    Args:
        total: Number of batches, or ``None`` if unknown.
        description: Shown before the bar or at the start of each line, e.g. ``"epoch 3
            train"``.
        enabled: ``False`` reports nothing (quiet runs); ranks other than 0 never report.
        unit: What ``total`` counts, as the bar's rate shows it (``"batch"``: batches/s;
            ``"img"``: images/s, with `update`'s ``count`` the images of each step).
    """

    def __init__(
        self, total: int | None, description: str, *, enabled: bool = True, unit: str = "batch"
    ) -> None:
        self.total = total
        self.description = description
        self.enabled = enabled and is_main_process()
        self.done = 0
        self._bar: Any = _new_bar(total, description, unit) if self.enabled else None
        # Without a bar, batch lines are for a person at a terminal; a log gets them only at
        # DEBUG, if the program asked for that.
        self._lines = self.enabled and self._bar is None
        self._on_terminal = is_terminal(sys.stdout)
        self._shown_at = -math.inf

    def update(self, read: Callable[[], Mapping[str, float]] | None = None, count: int = 1) -> None:
        """Advance by one step of ``count`` units (a batch); ``read()`` returns the running
        metrics, this step included.

        ``read`` is called only when the metrics are shown (a line, or the bar's postfix at
        most every ``_BAR_REFRESH_S`` seconds and at the last batch), because reading metrics
        kept on an accelerator makes the host wait for it. The bar takes the new metrics before
        it moves, so that what it draws is never a batch behind, and the last batch's frame
        shows the pass's final numbers.
        """
        previous = self.done
        self.done += count
        last = self.done == self.total
        if self._bar is not None:
            now = time.monotonic()
            if read is not None and (last or now - self._shown_at >= _BAR_REFRESH_S):
                self._shown_at = now
                self._bar.set_postfix(_shown(read()), refresh=False)
            self._bar.update(count)
            if last:
                self._bar.refresh()
            return
        debug = not self._on_terminal and logger.isEnabledFor(logging.DEBUG)
        if not (self._lines and (self._on_terminal or debug)):
            return
        every = max(1, (self.total or 50) // _LOG_LINES_PER_EPOCH)
        if self.done // every > previous // every or last:
            of_total = f"/{self.total}" if self.total is not None else ""
            shown = _shown(read()) if read is not None else {}
            details = " ".join(f"{name}={value}" for name, value in shown.items())
            line = ("%s %d%s %s", self.description, self.done, of_total, details)
            if debug:
                logger.debug(*line)
            else:
                report(*line)

    def close(self) -> None:
        """Remove the bar (lines need no closing)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _new_bar(total: int | None, description: str, unit: str = "batch") -> Any:
    """A tqdm bar on stderr if tqdm is installed and a person can watch it redrawn in place (a
    terminal, or a notebook's widget), else ``None``."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        logger.debug("tqdm is not installed; install vitlib[progress] for progress bars")
        return None
    in_notebook = any(cls.__module__ == "tqdm.notebook" for cls in tqdm.__mro__)
    if not (in_notebook or is_terminal(sys.stderr)):
        return None
    return tqdm(total=total, desc=description, leave=False, dynamic_ncols=True, unit=unit)


def _shown(metrics: Mapping[str, float]) -> dict[str, str]:
    return {name: f"{value:.4g}" for name, value in metrics.items()}
