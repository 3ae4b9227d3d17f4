"""The demo's example images: a few test images of the run that trained the model.

A run folder records its data in ``settings.json`` (``model_selection``'s ``data``: the data
folder's absolute path, or ``"digits"``; runs of an older vitlib, the ``--data`` option alone).
When that folder has a ``test/`` split, its first readable image of each class, in class order,
are the examples. A checkpoint outside a run, a run on the digits, and a data folder that has
moved or lost its ``test/`` give none: the page works without them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

from vitlib._checks import check_non_negative_int, check_type
from vitlib.checkpoints.run_folder import BEST, LAST, SETTINGS_FILE
from vitlib.data.image_folder import image_files, open_image
from vitlib.errors import CheckpointError, DataError
from vitlib.files import read_json
from vitlib.training.run_data import SELECTION_KEY

__all__ = ["DEFAULT_EXAMPLES", "run_data_folder", "run_examples"]

#: How many examples the demo shows by default (one per class, at most).
DEFAULT_EXAMPLES: Final = 8


def run_examples(source: str | os.PathLike[str], count: int = DEFAULT_EXAMPLES) -> list[Path]:
    """Up to ``count`` test images of the run ``source``: the first readable image of each class
    of its data folder's ``test/``, in class order (classes beyond ``count`` are left out).

    Args:
        source: What the demo was given: a run folder, its ``best/`` or ``last/``, or any other
            checkpoint (which gives no examples).
        count: At most this many images; 0 for none.

    Returns:
        The image paths; empty when ``source`` is no run, or its data has no ``test/`` folder.

    Raises:
        InputTypeError: ``source`` is not a path, or ``count`` not an int.
        ConfigError: ``count`` is negative.
        CheckpointError: The run's ``settings.json`` is not a JSON object.
    """
    check_type("source", source, (str, os.PathLike), "a run folder or checkpoint path")
    check_non_negative_int("count", count)
    data = run_data_folder(Path(source))
    test = data / "test" if data is not None else None
    if count == 0 or test is None or not test.is_dir():
        return []
    classes = sorted(
        entry for entry in test.iterdir() if entry.is_dir() and not entry.name.startswith(".")
    )
    examples = []
    for folder in classes:
        first = next((path for path in image_files(folder) if _readable(path)), None)
        if first is not None:
            examples.append(first)
        if len(examples) == count:
            break
    return examples


def run_data_folder(source: Path) -> Path | None:
    """The data folder the run at ``source`` (a run folder, or its ``best/`` or ``last/``) was
    trained on, as its ``settings.json`` records it; ``None`` for no run, or a run on the digits.

    Raises:
        CheckpointError: ``settings.json`` is not a JSON object.
    """
    run = source.parent if source.name in (BEST, LAST) else source
    settings_path = run / SETTINGS_FILE
    if not settings_path.is_file():
        return None
    settings = read_json(settings_path)
    selection: Any = settings.get(SELECTION_KEY)
    data = selection.get("data") if isinstance(selection, dict) else settings.get("--data")
    if data is None or data == "digits":
        return None
    if not isinstance(data, str):
        raise CheckpointError(
            f"{settings_path} records the data folder as {data!r}; expected a path string, as "
            "vitlib train writes it. Restore the file, or run the demo on best/ alone."
        )
    return Path(data)  # absolute; an older run's --data is as typed, from where it ran


def _readable(path: Path) -> bool:
    """Whether ``path`` decodes as an image (the demo would show an error for it otherwise)."""
    try:
        open_image(path)
    except DataError:
        return False
    return True
