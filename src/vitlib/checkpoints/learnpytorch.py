"""The learnpytorch.io chapter's ``ViT`` (``msa_block.multihead_attn``, ``classifier``) -> vitlib.

vitlib keeps the chapter's module names, so most keys are unchanged. The chapter's attention is
``nn.MultiheadAttention`` (``in_proj_weight`` stacks q, k, v rows as vitlib's ``qkv`` does), its MLP
is ``mlp.0`` / ``mlp.3``, and its classifier ``Sequential(LayerNorm, Linear)`` applied to the class
token equals vitlib's final norm followed by the head. Its layer norms use PyTorch's default
``eps=1e-5``.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from ._mapping import Converted, count_layers, rename

__all__ = ["matches", "to_vitlib"]

NAME = "learnpytorch"

_BLOCK = "transformer_encoder.{i}"
_TABLE: tuple[tuple[str, str], ...] = (
    ("class_embedding", "class_embedding"),
    ("position_embedding", "position_embedding"),
    ("patch_embedding.patcher.weight", "patch_embedding.patcher.weight"),
    ("patch_embedding.patcher.bias", "patch_embedding.patcher.bias"),
    (f"{_BLOCK}.msa_block.layer_norm.weight", f"{_BLOCK}.msa_block.layer_norm.weight"),
    (f"{_BLOCK}.msa_block.layer_norm.bias", f"{_BLOCK}.msa_block.layer_norm.bias"),
    (f"{_BLOCK}.msa_block.multihead_attn.in_proj_weight", f"{_BLOCK}.msa_block.qkv.weight"),
    (f"{_BLOCK}.msa_block.multihead_attn.in_proj_bias", f"{_BLOCK}.msa_block.qkv.bias"),
    (f"{_BLOCK}.msa_block.multihead_attn.out_proj.weight", f"{_BLOCK}.msa_block.out_proj.weight"),
    (f"{_BLOCK}.msa_block.multihead_attn.out_proj.bias", f"{_BLOCK}.msa_block.out_proj.bias"),
    (f"{_BLOCK}.mlp_block.layer_norm.weight", f"{_BLOCK}.mlp_block.layer_norm.weight"),
    (f"{_BLOCK}.mlp_block.layer_norm.bias", f"{_BLOCK}.mlp_block.layer_norm.bias"),
    (f"{_BLOCK}.mlp_block.mlp.0.weight", f"{_BLOCK}.mlp_block.fc1.weight"),
    (f"{_BLOCK}.mlp_block.mlp.0.bias", f"{_BLOCK}.mlp_block.fc1.bias"),
    (f"{_BLOCK}.mlp_block.mlp.3.weight", f"{_BLOCK}.mlp_block.fc2.weight"),
    (f"{_BLOCK}.mlp_block.mlp.3.bias", f"{_BLOCK}.mlp_block.fc2.bias"),
    ("classifier.0.weight", "norm.weight"),
    ("classifier.0.bias", "norm.bias"),
    ("classifier.1.weight", "head.weight"),
    ("classifier.1.bias", "head.bias"),
)


def matches(keys: set[str]) -> bool:
    """Whether ``keys`` look like the chapter's ViT state dict."""
    return "classifier.0.weight" in keys and any("multihead_attn" in key for key in keys)


def to_vitlib(state: Mapping[str, Tensor]) -> Converted:
    """Convert the chapter's ViT state dict to vitlib's layout."""
    depth = count_layers(state, r"transformer_encoder\.(\d+)\.")
    converted = rename(state, _TABLE, depth, family=NAME)
    return Converted(NAME, converted, {"layer_norm_eps": 1e-5})
