"""The paper's building blocks, one per file (eq. 1-3)."""

from __future__ import annotations

from .attention import MultiheadSelfAttentionBlock
from .encoder import TransformerEncoderBlock
from .mlp import MLPBlock
from .patch_embedding import PatchEmbedding
from .regularization import DropPath, LayerScale

__all__ = [
    "DropPath",
    "LayerScale",
    "MLPBlock",
    "MultiheadSelfAttentionBlock",
    "PatchEmbedding",
    "TransformerEncoderBlock",
]
