"""The paper's building blocks, one per file (eq. 1-3)."""

from __future__ import annotations

from vitlib.blocks.attention import MultiheadSelfAttentionBlock
from vitlib.blocks.encoder import TransformerEncoderBlock
from vitlib.blocks.mlp import MLPBlock
from vitlib.blocks.patch_embedding import PatchEmbedding
from vitlib.blocks.regularization import DropPath, LayerScale

__all__ = [
    "DropPath",
    "LayerScale",
    "MLPBlock",
    "MultiheadSelfAttentionBlock",
    "PatchEmbedding",
    "TransformerEncoderBlock",
]
