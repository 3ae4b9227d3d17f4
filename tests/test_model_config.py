"""``ViTConfig`` is the model's single source: the name and every field survive each path a
model is built, saved or summarised by; and ``reset_parameters`` is the one init policy."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given

import vitlib
from vitlib import ConfigError, ViT, ViTConfig
from vitlib.cli import main

from .strategies import small_configs


@given(cfg=small_configs())
def test_every_field_round_trips_through_dict_and_json(cfg: ViTConfig) -> None:
    named = cfg.replace(name="my-variant")
    for copy in (ViTConfig.from_dict(named.to_dict()), ViTConfig.from_json(named.to_json())):
        assert copy == named
        assert copy.name == "my-variant"
    assert set(named.to_dict()) == {*vitlib.config.field_names()}


def test_a_preset_is_named_until_its_architecture_changes() -> None:
    assert ViTConfig.from_preset("vit_base_patch16_384").name == "ViT-B/16"
    assert ViTConfig.from_preset("ViT-B/16", num_classes=3, img_size=384).name == "ViT-B/16"
    assert ViTConfig.from_preset("ViT-B/16", num_transformer_layers=4).name is None
    assert ViTConfig.from_preset("ViT-B/16", embedding_dim=48, name="mine").name == "mine"


def test_from_config_keeps_the_config_object() -> None:
    cfg = ViTConfig.from_preset("ViT-Ti/16", img_size=32, num_classes=3)
    model = ViT.from_config(cfg)
    assert model.config is cfg
    assert ViT(**cfg.to_dict()).config.name == "ViT-Ti/16"


def test_create_model_load_pretrained_and_summary_keep_the_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = vitlib.create_model("ViT-Ti/16", img_size=32, num_classes=3)
    assert model.config.name == "ViT-Ti/16"
    vitlib.save_pretrained(model, tmp_path / "ck")
    assert vitlib.load_pretrained(tmp_path / "ck").config.name == "ViT-Ti/16"
    with pytest.warns(vitlib.AdaptedCheckpointWarning, match="head re-initialised"):
        adapted = vitlib.load_pretrained(model, num_classes=5, img_size=64)
    assert adapted.config.name == "ViT-Ti/16"
    assert main(["summary", "ViT-B/16", "--depth", "0"]) == 0
    assert "ViT-B/16 (ViT)" in capsys.readouterr().out


def test_reset_parameters_covers_every_parameter() -> None:
    model = ViT(
        img_size=16, patch_size=4, num_transformer_layers=2, embedding_dim=12, mlp_size=24,
        num_heads=3, num_classes=5, num_register_tokens=2, representation_size=6,
        layer_scale_init=0.1,
    )  # fmt: skip
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(7.0)
    model.reset_parameters()
    for name, parameter in model.named_parameters():
        assert not torch.all(parameter == 7.0), f"{name} was not re-initialised"
    gammas = [p for n, p in model.named_parameters() if n.endswith(".gamma")]
    assert gammas, "the model has LayerScale"
    assert all(torch.all(gamma == 0.1) for gamma in gammas)


def test_position_std_is_an_option_of_the_init_policy() -> None:
    model = vitlib.create_model("ViT-Ti/4", img_size=64, num_classes=3)
    torch.manual_seed(0)
    model.reset_parameters()
    assert model.position_embedding.std().item() == pytest.approx(0.02, rel=0.1)
    model.reset_parameters(position_std=1.0)
    assert model.position_embedding.std().item() == pytest.approx(1.0, rel=0.05)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ConfigError, match="position_std must be a finite number > 0"):
            model.reset_parameters(position_std=bad)
