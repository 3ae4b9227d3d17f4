"""The layout of a training run folder, named once: what `vitlib.training.fit` writes and what
[`load_pretrained`][vitlib.load_pretrained] reads when given a run.

```text
last/          the model after the latest epoch, plus training_state.pt (resume from here)
best/          the model of the best validation epoch (load_pretrained(run) reads this one)
history.json   per-epoch metrics
settings.json  the options of vitlib train / vitlib finetune (checked on --resume)
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from vitlib.checkpoints.weights import CONFIG_FILE, WEIGHTS_FILE
from vitlib.errors import CheckpointError

__all__ = [
    "BEST",
    "HISTORY_FILE",
    "LAST",
    "RUN_ENTRIES",
    "SETTINGS_FILE",
    "STATE_FILE",
    "checkpoint_of_run",
]

LAST: Final = "last"
BEST: Final = "best"
HISTORY_FILE: Final = "history.json"
STATE_FILE: Final = "training_state.pt"
SETTINGS_FILE: Final = "settings.json"
#: Everything a run writes into its folder (and nothing else is ever deleted there).
RUN_ENTRIES: Final = (LAST, BEST, HISTORY_FILE, SETTINGS_FILE)


def checkpoint_of_run(path: Path) -> Path | None:
    """The checkpoint folder to load for ``path`` when it is a run folder (its ``best/``);
    None when ``path`` is no run folder.

    Raises:
        CheckpointError: A run folder without ``best/``; the message names ``last/`` instead.
    """
    if (path / CONFIG_FILE).exists() or (path / WEIGHTS_FILE).exists():
        return None
    best, last = path / BEST, path / LAST
    if (best / CONFIG_FILE).is_file() or (best / WEIGHTS_FILE).is_file():
        return best
    if last.is_dir():
        raise CheckpointError(
            f"{path} is a training run without a {BEST}/ checkpoint (the model of its best "
            f"epoch); load {last} (the latest epoch) by its path."
        )
    return None
