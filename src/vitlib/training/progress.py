"""Progress: a tqdm bar when tqdm is installed (``vitlib[progress]``), else log lines.

The lines (per-epoch results, and the per-batch lines without tqdm) go through the
``vitlib.training`` logger when the program has configured logging, so it decides what shows and
where; a program that has not (where Python would drop them) gets them printed on stdout, above
any progress bar.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

logger = logging.getLogger("vitlib.training")

_LOG_LINES_PER_EPOCH = 5
_BAR_REFRESH_S = 0.5


def report(message: str, *args: object) -> None:
    """Show one progress line: ``message % args``.

    Logged at INFO on ``vitlib.training`` if any handler is configured (``logging.basicConfig``,
    a framework's setup, pytest's capture); otherwise printed to stdout, through ``tqdm.write``
    when tqdm is installed so that a bar on the terminal is not broken.
    """
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
    """Report one pass over a loader, batch by batch.

    Args:
        total: Number of batches, or ``None`` if unknown.
        description: Shown before the bar or at the start of each log line, e.g. ``"epoch 3
            train"``.
        enabled: ``False`` reports nothing (non-zero ranks, quiet runs).
    """

    def __init__(self, total: int | None, description: str, *, enabled: bool = True) -> None:
        self.total = total
        self.description = description
        self.enabled = enabled
        self.done = 0
        self._bar: Any = None
        self._shown_at = -math.inf
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                logger.debug("tqdm is not installed; install vitlib[progress] for progress bars")
            else:
                self._bar = tqdm(total=total, desc=description, leave=False, dynamic_ncols=True)

    def update(self, read: Callable[[], Mapping[str, float]] | None = None) -> None:
        """Advance by one batch; ``read()`` returns the running metrics to show.

        ``read`` is called only when the metrics are shown (a log line, or the bar's postfix at
        most every ``_BAR_REFRESH_S`` seconds and at the last batch), because reading metrics
        kept on an accelerator makes the host wait for it.
        """
        self.done += 1
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(1)
            now = time.monotonic()
            due = now - self._shown_at >= _BAR_REFRESH_S or self.done == self.total
            if read is not None and due:
                self._shown_at = now
                self._bar.set_postfix(_shown(read()), refresh=False)
            return
        every = max(1, (self.total or 50) // _LOG_LINES_PER_EPOCH)
        if self.done % every == 0 or self.done == self.total:
            of_total = f"/{self.total}" if self.total is not None else ""
            shown = _shown(read()) if read is not None else {}
            details = " ".join(f"{name}={value}" for name, value in shown.items())
            report("%s %d%s %s", self.description, self.done, of_total, details)

    def close(self) -> None:
        """Remove the bar (log lines need no closing)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _shown(metrics: Mapping[str, float]) -> dict[str, str]:
    return {name: f"{value:.4g}" for name, value in metrics.items()}
