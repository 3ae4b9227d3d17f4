"""What many test modules share: paths, the tiny ViT, loading a script as a module.

Not a ``test_*`` module, so pytest collects nothing here; import it as ``from tests.helpers
import ...`` (or ``from .helpers import ...``).
"""

from __future__ import annotations

import importlib.util
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
