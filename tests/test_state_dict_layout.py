"""The state-dict layout is public: these keys and shapes are pinned (see docs/architecture.md)."""

from __future__ import annotations

from vitlib.checkpoints.keys import SLOTS

from .helpers import tiny_vit

GOLDEN = {
    "class_embedding": (1, 1, 12),
    "register_tokens": (1, 2, 12),
    "position_embedding": (1, 17, 12),
    "patch_embedding.patcher.weight": (12, 3, 4, 4),
    "patch_embedding.patcher.bias": (12,),
    "transformer_encoder.0.msa_block.layer_norm.weight": (12,),
    "transformer_encoder.0.msa_block.layer_norm.bias": (12,),
    "transformer_encoder.0.msa_block.qkv.weight": (36, 12),
    "transformer_encoder.0.msa_block.qkv.bias": (36,),
    "transformer_encoder.0.msa_block.out_proj.weight": (12, 12),
    "transformer_encoder.0.msa_block.out_proj.bias": (12,),
    "transformer_encoder.0.mlp_block.layer_norm.weight": (12,),
    "transformer_encoder.0.mlp_block.layer_norm.bias": (12,),
    "transformer_encoder.0.mlp_block.fc1.weight": (24, 12),
    "transformer_encoder.0.mlp_block.fc1.bias": (24,),
    "transformer_encoder.0.mlp_block.fc2.weight": (12, 24),
    "transformer_encoder.0.mlp_block.fc2.bias": (12,),
    "transformer_encoder.0.msa_scale.gamma": (12,),
    "transformer_encoder.0.mlp_scale.gamma": (12,),
    "norm.weight": (12,),
    "norm.bias": (12,),
    "pre_logits.fc.weight": (6, 12),
    "pre_logits.fc.bias": (6,),
    "head.weight": (5, 6),
    "head.bias": (5,),
}


def test_state_dict_keys_and_shapes_are_pinned() -> None:
    model = tiny_vit(
        num_transformer_layers=1,
        representation_size=6,
        layer_scale_init=0.1,
        num_register_tokens=2,
    )
    layout = {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}
    assert layout == GOLDEN
    assert list(layout) == list(GOLDEN), "the order is public too"


def test_default_model_has_only_the_paper_tensors() -> None:
    model = tiny_vit(num_transformer_layers=1)
    optional = {
        "register_tokens",
        "pre_logits.fc.weight",
        "pre_logits.fc.bias",
        "transformer_encoder.0.msa_scale.gamma",
        "transformer_encoder.0.mlp_scale.gamma",
    }
    assert set(model.state_dict()) == set(GOLDEN) - optional


def test_the_converters_slots_spell_exactly_this_layout() -> None:
    """Every family's table maps to these slots, so they must be the layout, key for key and in
    order: a renamed module then fails here instead of in one converter."""
    keys = [slot.key(param) for slot in SLOTS for param in slot.params or (None,)]
    assert keys == list(GOLDEN)
    for key in GOLDEN:
        assert sum(slot.owns(key) for slot in SLOTS) == 1, key
