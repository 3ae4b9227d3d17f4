"""torchvision's ``VisionTransformer`` (``conv_proj``, ``encoder.layers``) -> vitlib.

torchvision's attention is ``nn.MultiheadAttention``, whose ``in_proj_weight`` stacks query, key
and value rows exactly like vitlib's fused ``qkv``: every tensor maps by name alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from torch import Tensor

from vitlib.checkpoints import keys as slots
from vitlib.checkpoints.family import Converted, Family, Table, count_layers, key_pairs, rename

__all__ = ["FAMILY", "matches", "to_vitlib"]

NAME = "torchvision"

_LAYER = "encoder.layers.encoder_layer_{i}"
_TABLE: Table = (
    ("class_token", slots.CLASS_TOKEN),
    ("encoder.pos_embedding", slots.POSITION),
    ("conv_proj", slots.PATCH),
    (f"{_LAYER}.ln_1", slots.MSA_NORM),
    (f"{_LAYER}.self_attention.in_proj_{{param}}", slots.QKV),
    (f"{_LAYER}.self_attention.out_proj", slots.OUT_PROJ),
    (f"{_LAYER}.ln_2", slots.MLP_NORM),
    (f"{_LAYER}.mlp.0", slots.FC1),
    (f"{_LAYER}.mlp.3", slots.FC2),
    # torchvision < 0.13 named the MLP layers linear_1 / linear_2.
    (f"{_LAYER}.mlp.linear_1", slots.FC1),
    (f"{_LAYER}.mlp.linear_2", slots.FC2),
    ("encoder.ln", slots.NORM),
    ("heads.pre_logits", slots.PRE_LOGITS),
    ("heads.head", slots.HEAD),
)


def matches(keys: set[str]) -> bool:
    """Whether ``keys`` look like a torchvision ViT state dict."""
    return "conv_proj.weight" in keys and "encoder.pos_embedding" in keys


def to_vitlib(state: Mapping[str, Tensor]) -> Converted:
    """Convert a torchvision ViT state dict to vitlib's layout."""
    depth = count_layers(state, r"encoder\.layers\.encoder_layer_(\d+)\.")
    converted = rename(state, key_pairs(_TABLE), depth, family=NAME)
    return Converted(NAME, converted, {"layer_norm_eps": 1e-6})


FAMILY: Final = Family(NAME, "torchvision", matches, to_vitlib)
