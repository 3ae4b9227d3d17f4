"""Tiny image folders drawn with PIL, for the predict, evaluate and CLI tests.

Not a ``test_*`` module, so pytest collects nothing here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: One colour per class: a classifier can tell them apart after a few steps.
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 50, 230)}


def write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int], seed: int) -> Path:
    """A ``size`` (width, height) image of ``colour`` with noise, saved at ``path``."""
    rng = np.random.default_rng(seed)
    base = np.array(colour, dtype=np.int16)
    pixels = base + rng.integers(-25, 26, size=(size[1], size[0], 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8), "RGB").save(path)
    return path


def write_image_folder(root: Path, per_class: int = 4, seed: int = 0) -> Path:
    """``root/<colour>/<i>.png`` for each of ``COLOURS``, of varied sizes; returns ``root``."""
    for class_index, (name, colour) in enumerate(COLOURS.items()):
        for index in range(per_class):
            size = (20 + 3 * index, 18 + 2 * class_index)
            write_image(
                root / name / f"{index}.png", colour, size, seed + 100 * class_index + index
            )
    return root
