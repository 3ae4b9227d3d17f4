"""The learnpytorch.io chapter's ``ViT`` (``msa_block.multihead_attn``, ``classifier``) -> vitlib.

vitlib keeps the chapter's module names, so most keys are unchanged. The chapter's attention is
``nn.MultiheadAttention`` (``in_proj_weight`` stacks q, k, v rows as vitlib's ``qkv`` does), its MLP
is ``mlp.0`` / ``mlp.3``, and its classifier ``Sequential(LayerNorm, Linear)`` applied to the class
token equals vitlib's final norm followed by the head. Its layer norms use PyTorch's default
``eps=1e-5``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from torch import Tensor

from vitlib.checkpoints import keys as slots
from vitlib.checkpoints.family import Converted, Family, Table, count_layers, key_pairs, rename

__all__ = ["FAMILY", "matches", "to_vitlib"]

NAME = "learnpytorch"

_BLOCK = "transformer_encoder.{i}"
_TABLE: Table = (
    ("class_embedding", slots.CLASS_TOKEN),
    ("position_embedding", slots.POSITION),
    ("patch_embedding.patcher", slots.PATCH),
    (f"{_BLOCK}.msa_block.layer_norm", slots.MSA_NORM),
    (f"{_BLOCK}.msa_block.multihead_attn.in_proj_{{param}}", slots.QKV),
    (f"{_BLOCK}.msa_block.multihead_attn.out_proj", slots.OUT_PROJ),
    (f"{_BLOCK}.mlp_block.layer_norm", slots.MLP_NORM),
    (f"{_BLOCK}.mlp_block.mlp.0", slots.FC1),
    (f"{_BLOCK}.mlp_block.mlp.3", slots.FC2),
    ("classifier.0", slots.NORM),
    ("classifier.1", slots.HEAD),
)


def matches(keys: set[str]) -> bool:
    """Whether ``keys`` look like the chapter's ViT state dict."""
    return "classifier.0.weight" in keys and any("multihead_attn" in key for key in keys)


def to_vitlib(state: Mapping[str, Tensor]) -> Converted:
    """Convert the chapter's ViT state dict to vitlib's layout."""
    depth = count_layers(state, r"transformer_encoder\.(\d+)\.")
    converted = rename(state, key_pairs(_TABLE), depth, family=NAME)
    return Converted(NAME, converted, {"layer_norm_eps": 1e-5})


FAMILY: Final = Family(NAME, "the learnpytorch.io chapter", matches, to_vitlib)
