"""ViTConfig: presets, names, validation, serialisation."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import vitlib
from vitlib import SIZES, ConfigError, ViT, ViTConfig, list_presets
from vitlib.config import parse_preset_name

from .strategies import small_configs


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ViT-B/16", ("B", 16, None)),
        ("vit-b/16", ("B", 16, None)),
        ("B/16", ("B", 16, None)),
        ("ViT-L/14", ("L", 14, None)),
        ("ViT-S/8", ("S", 8, None)),
        ("ViT-Ti/16", ("Ti", 16, None)),
        ("vit_b_16", ("B", 16, None)),
        ("vit_h_14", ("H", 14, None)),
        ("vit_base_patch16_224", ("B", 16, 224)),
        ("vit_large_patch16_384", ("L", 16, 384)),
        ("vit_base_patch16_224.augreg_in21k", ("B", 16, 224)),
        ("ViT-L/14@336", ("L", 14, 336)),
        ("ViT-S/4", ("S", 4, None)),
    ],
)
def test_preset_names_parse_in_every_common_spelling(
    name: str, expected: tuple[str, int, int | None]
) -> None:
    assert parse_preset_name(name) == expected


def test_aliases_give_the_same_config() -> None:
    canonical = ViTConfig.from_preset("ViT-B/16")
    assert ViTConfig.from_preset("vit_b_16") == canonical
    assert ViTConfig.from_preset("vit_base_patch16_224") == canonical


#: (layers, hidden size D, MLP size, heads), written out from Table 1 of Dosovitskiy et al.
#: (B, L, H) and Table 1 of DeiT (Touvron et al., 2021) for Ti and S; never read from vitlib.
TABLE_1 = {
    "Ti": (12, 192, 768, 3),
    "S": (12, 384, 1536, 6),
    "B": (12, 768, 3072, 12),
    "L": (24, 1024, 4096, 16),
    "H": (32, 1280, 5120, 16),
}


@pytest.mark.parametrize(("size", "expected"), TABLE_1.items())
def test_presets_follow_table_1(size: str, expected: tuple[int, int, int, int]) -> None:
    for name in (f"ViT-{size}/16", f"{size}/32", f"ViT-{size}/14@336"):
        cfg = ViTConfig.from_preset(name)
        shape = (cfg.num_transformer_layers, cfg.embedding_dim, cfg.mlp_size, cfg.num_heads)
        assert shape == expected, name
    assert SIZES[size][1:] == expected


def test_table_1_has_exactly_the_five_sizes() -> None:
    assert set(SIZES) == set(TABLE_1)


def test_every_listed_preset_builds_a_config() -> None:
    for name in list_presets():
        assert ViTConfig.from_preset(name).name == name


def test_unknown_preset_suggests_close_matches() -> None:
    with pytest.raises(ConfigError, match=r"did you mean.*ViT-B/16"):
        ViTConfig.from_preset("ViT-B/61x")
    with pytest.raises(ConfigError, match="unknown ViT preset 'resnet50'"):
        vitlib.create_model("resnet50")


def test_unknown_override_names_the_field_and_suggests() -> None:
    with pytest.raises(TypeError, match=r"'num_class' \(did you mean 'num_classes'\?\)"):
        ViTConfig.from_preset("ViT-B/16", num_class=3)


def test_overrides_apply() -> None:
    cfg = ViTConfig.from_preset("ViT-B/16", num_classes=3, img_size=384)
    assert (cfg.num_classes, cfg.img_size, cfg.num_patches) == (3, 384, 576)


@given(small_configs())
def test_json_round_trip_is_exact(cfg: ViTConfig) -> None:
    assert ViTConfig.from_json(cfg.to_json()) == cfg
    assert ViTConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@given(small_configs())
def test_to_dict_keys_are_exactly_the_vit_arguments(cfg: ViTConfig) -> None:
    model = ViT(**cfg.to_dict())
    assert model.config == cfg


def test_config_is_frozen() -> None:
    cfg = ViTConfig()
    with pytest.raises(AttributeError):
        cfg.num_classes = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"img_size": 225}, ConfigError, r"img_size 225x225 is not divisible by patch_size 16x16"),
        ({"img_size": (224, 100)}, ConfigError, "not divisible"),
        (
            {"embedding_dim": 100},
            ConfigError,
            r"embedding_dim 100 is not divisible by num_heads 12",
        ),
        ({"num_heads": 0}, ConfigError, "num_heads must be an int >= 1, got 0"),
        ({"num_transformer_layers": 2.5}, TypeError, "num_transformer_layers must be an int"),
        ({"in_channels": True}, TypeError, "in_channels must be an int"),
        (
            {"mlp_dropout": 1.0},
            ConfigError,
            r"mlp_dropout must be a number in \[0, 1\), got 1.0; 0.0 disables it",
        ),
        ({"attn_dropout": -0.1}, ConfigError, "attn_dropout must be a number in"),
        (
            {"embedding_dropout": "0.1"},
            TypeError,
            r"embedding_dropout must be a number in \[0, 1\), got '0.1' \(str\)",
        ),
        ({"num_classes": -1}, ConfigError, "num_classes must be an int >= 0, got -1"),
        ({"pool": "max"}, ConfigError, "pool must be one of"),
        ({"class_token": False}, ConfigError, "pool='token' needs the class token"),
        ({"representation_size": 0}, ConfigError, "representation_size must be an int >= 1, got 0"),
        (
            {"layer_norm_eps": 0.0},
            ConfigError,
            r"layer_norm_eps must be a number in \(0, 0.1\], got 0.0",
        ),
        (
            {"layer_scale_init": -1.0},
            ConfigError,
            r"layer_scale_init must be None \(off\) or a number in \(0, 10\], got -1.0",
        ),
        (
            {"num_register_tokens": -1},
            ConfigError,
            "num_register_tokens must be an int >= 0, got -1",
        ),
        ({"patch_size": (16, 16, 1)}, ConfigError, "patch_size must be an int or a"),
        ({"drop_path_rate": 1.5}, ConfigError, "drop_path_rate must be a number in"),
    ],
)
def test_bad_configs_raise_clear_errors(
    overrides: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        ViTConfig(**overrides)


def test_bad_config_is_also_rejected_by_the_model() -> None:
    with pytest.raises(ConfigError, match="not divisible"):
        ViT(img_size=30, patch_size=16)


def test_from_dict_rejects_unknown_keys_and_non_mappings() -> None:
    with pytest.raises(TypeError, match="unknown ViTConfig field"):
        ViTConfig.from_dict({"depth": 12})
    with pytest.raises(TypeError, match="data must be a mapping of ViTConfig fields, got"):
        ViTConfig.from_dict([1, 2])  # type: ignore[arg-type]


def test_from_json_rejects_broken_json() -> None:
    with pytest.raises(ConfigError, match="not valid JSON"):
        ViTConfig.from_json("{")


@given(st.integers(1, 64), st.integers(1, 64))
def test_non_divisible_image_sizes_are_always_rejected(size: int, patch: int) -> None:
    if size % patch:
        with pytest.raises(ConfigError):
            ViTConfig(img_size=size, patch_size=patch, embedding_dim=12, num_heads=3)
    else:
        assert (
            ViTConfig(img_size=size, patch_size=patch, embedding_dim=12, num_heads=3).num_patches
            == (size // patch) ** 2
        )


def test_replace_validates() -> None:
    cfg = ViTConfig()
    assert cfg.replace(num_classes=10).num_classes == 10
    with pytest.raises(ConfigError):
        cfg.replace(num_heads=7)


def test_did_you_mean_ignores_case_and_names_up_to_n_choices() -> None:
    from vitlib._checks import did_you_mean

    assert did_you_mean("AdamW", ["adamw", "sgd"]) == " (did you mean 'adamw'?)"
    assert did_you_mean("vit_b_61", ["vit_b_16", "vit_b_32", "xyz"], n=2, cutoff=0.5) == (
        " (did you mean 'vit_b_16' or 'vit_b_32'?)"
    )
    assert did_you_mean("resnet50", ["vit_b_16"]) == ""
