"""torchvision's ``VisionTransformer`` (``conv_proj``, ``encoder.layers``) -> vitlib.

torchvision's attention is ``nn.MultiheadAttention``, whose ``in_proj_weight`` stacks query, key
and value rows exactly like vitlib's fused ``qkv``: every tensor maps by name alone.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from ._mapping import Converted, count_layers, rename

__all__ = ["matches", "to_vitlib"]

NAME = "torchvision"

_LAYER_PREFIX = "encoder.layers.encoder_layer_{i}"
_TABLE: tuple[tuple[str, str], ...] = (
    ("class_token", "class_embedding"),
    ("encoder.pos_embedding", "position_embedding"),
    ("conv_proj.weight", "patch_embedding.patcher.weight"),
    ("conv_proj.bias", "patch_embedding.patcher.bias"),
    (f"{_LAYER_PREFIX}.ln_1.weight", "transformer_encoder.{i}.msa_block.layer_norm.weight"),
    (f"{_LAYER_PREFIX}.ln_1.bias", "transformer_encoder.{i}.msa_block.layer_norm.bias"),
    (
        f"{_LAYER_PREFIX}.self_attention.in_proj_weight",
        "transformer_encoder.{i}.msa_block.qkv.weight",
    ),
    (f"{_LAYER_PREFIX}.self_attention.in_proj_bias", "transformer_encoder.{i}.msa_block.qkv.bias"),
    (
        f"{_LAYER_PREFIX}.self_attention.out_proj.weight",
        "transformer_encoder.{i}.msa_block.out_proj.weight",
    ),
    (
        f"{_LAYER_PREFIX}.self_attention.out_proj.bias",
        "transformer_encoder.{i}.msa_block.out_proj.bias",
    ),
    (f"{_LAYER_PREFIX}.ln_2.weight", "transformer_encoder.{i}.mlp_block.layer_norm.weight"),
    (f"{_LAYER_PREFIX}.ln_2.bias", "transformer_encoder.{i}.mlp_block.layer_norm.bias"),
    (f"{_LAYER_PREFIX}.mlp.0.weight", "transformer_encoder.{i}.mlp_block.fc1.weight"),
    (f"{_LAYER_PREFIX}.mlp.0.bias", "transformer_encoder.{i}.mlp_block.fc1.bias"),
    (f"{_LAYER_PREFIX}.mlp.3.weight", "transformer_encoder.{i}.mlp_block.fc2.weight"),
    (f"{_LAYER_PREFIX}.mlp.3.bias", "transformer_encoder.{i}.mlp_block.fc2.bias"),
    # torchvision < 0.13 named the MLP layers linear_1 / linear_2.
    (f"{_LAYER_PREFIX}.mlp.linear_1.weight", "transformer_encoder.{i}.mlp_block.fc1.weight"),
    (f"{_LAYER_PREFIX}.mlp.linear_1.bias", "transformer_encoder.{i}.mlp_block.fc1.bias"),
    (f"{_LAYER_PREFIX}.mlp.linear_2.weight", "transformer_encoder.{i}.mlp_block.fc2.weight"),
    (f"{_LAYER_PREFIX}.mlp.linear_2.bias", "transformer_encoder.{i}.mlp_block.fc2.bias"),
    ("encoder.ln.weight", "norm.weight"),
    ("encoder.ln.bias", "norm.bias"),
    ("heads.pre_logits.weight", "pre_logits.fc.weight"),
    ("heads.pre_logits.bias", "pre_logits.fc.bias"),
    ("heads.head.weight", "head.weight"),
    ("heads.head.bias", "head.bias"),
)


def matches(keys: set[str]) -> bool:
    """Whether ``keys`` look like a torchvision ViT state dict."""
    return "conv_proj.weight" in keys and "encoder.pos_embedding" in keys


def to_vitlib(state: Mapping[str, Tensor]) -> Converted:
    """Convert a torchvision ViT state dict to vitlib's layout."""
    depth = count_layers(state, r"encoder\.layers\.encoder_layer_(\d+)\.")
    converted = rename(state, _TABLE, depth, family=NAME)
    return Converted(NAME, converted, {"layer_norm_eps": 1e-6})
