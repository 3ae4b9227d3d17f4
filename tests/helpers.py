"""What many test modules share: paths, the tiny ViT, loading a script as a module.

Not a ``test_*`` module, so pytest collects nothing here; import it as ``from tests.helpers
import ...`` (or ``from .helpers import ...``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import torch

from vitlib import ViT

ROOT: Final = Path(__file__).resolve().parents[1]
#: Reference fixtures written by ``tools/reference_fixtures/make_fixtures.py`` with the real
#: timm, torchvision and Google code.
FIXTURES: Final = Path(__file__).parent / "fixtures" / "reference"

#: A 16x16 RGB ViT with 16 patches, 2 layers, width 12 and 3 heads: small enough for any test.
TINY: Final[dict[str, Any]] = {
    "img_size": 16,
    "in_channels": 3,
    "patch_size": 4,
    "num_transformer_layers": 2,
    "embedding_dim": 12,
    "mlp_size": 24,
    "num_heads": 3,
    "num_classes": 5,
}


def tiny_vit(seed: int = 0, **changes: Any) -> ViT:
    """:data:`TINY` with ``changes``, initialised from ``seed``, in eval mode."""
    torch.manual_seed(seed)
    return ViT(**{**TINY, **changes}).eval()


def load_module(path: Path, name: str | None = None) -> ModuleType:
    """Import the script at ``path`` (an example or a tool) as a module, without running
    its ``__main__`` block."""
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: The user and group id of ``nobody``, as which root runs the blocks of `unreadable`.
NOBODY: Final = 65534


@contextlib.contextmanager
def unreadable(path: Path) -> Iterator[None]:
    """Make ``path`` (a file or a folder) unreadable to the test for the ``with`` block.

    ``chmod 000`` does not stop root, so as root the block runs with the effective user and
    group ids of ``nobody`` (65534): the path's parents must then be open to others (the
    ``shared_tmp`` fixture), and what the block reads of the repository must be world-readable.
    """
    mode = path.stat().st_mode
    path.chmod(0)
    root = os.geteuid() == 0
    try:
        if root:
            os.setegid(NOBODY)
            os.seteuid(NOBODY)
        yield
    finally:
        if root:
            os.seteuid(0)
            os.setegid(0)
        path.chmod(mode)
