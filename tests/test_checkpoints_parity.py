"""Parity: every family's converted model gives the reference implementation's logits (1e-5)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import vitlib
from vitlib import ViT, load_pretrained
from vitlib.checkpoints import convert_state_dict, detect_family, export_state_dict

from . import learnpytorch_reference as chapter
from .helpers import FIXTURES

STATE_DICT_FIXTURES = ["timm_token", "timm_nonsquare", "torchvision_plain", "torchvision_prelogits"]
NPZ_FIXTURES = ["google_npz", "google_npz_prelogits"]


def _meta(name: str) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((FIXTURES / name / "meta.json").read_text())
    return meta


def _overrides(meta: dict[str, Any]) -> dict[str, Any]:
    """What a user tells load_pretrained about a tiny model that matches no preset."""
    config = meta["config"]
    overrides: dict[str, Any] = {"num_heads": config["num_heads"]}
    if config["pool"] == "mean":
        overrides["pool"] = "mean"
    if isinstance(config["img_size"], list):
        overrides["img_size"] = tuple(config["img_size"])
    return overrides


def _assert_same_logits(model: ViT, name: str) -> None:
    io = load_file(str(FIXTURES / name / "io.safetensors"))
    with torch.no_grad():
        logits = model.eval()(io["input"])
    torch.testing.assert_close(logits, io["logits"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", STATE_DICT_FIXTURES)
def test_timm_and_torchvision_fixtures_give_the_reference_logits(name: str) -> None:
    meta = _meta(name)
    model = load_pretrained(FIXTURES / name / "state_dict.safetensors", **_overrides(meta))
    assert model.config.num_classes == meta["config"]["num_classes"]
    assert model.config.layer_norm_eps == meta["config"]["layer_norm_eps"]
    assert model.config.representation_size == meta["config"]["representation_size"]
    _assert_same_logits(model, name)


@pytest.mark.parametrize("name", ["timm_token", "timm_nonsquare"])
def test_a_timm_checkpoint_folder_loads_without_being_told(name: str) -> None:
    """timm's own save_for_hf output (config.json + model.safetensors): the pooling, the heads
    and the image size come from its config.json, nothing from the caller."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load_pretrained(FIXTURES / name / "hub")
    assert model.config.pool == _meta(name)["config"]["pool"]
    _assert_same_logits(model, name)


def test_a_bare_timm_state_dict_warns_that_it_cannot_tell_its_pooling() -> None:
    """timm's global_pool='avg' with fc_norm=False has the same tensors as 'token': a bare state
    dict loads with the class token, and the warning names the override."""
    path = FIXTURES / "timm_nonsquare" / "state_dict.safetensors"
    told = {key: value for key, value in _overrides(_meta("timm_nonsquare")).items()}
    del told["pool"]
    with pytest.warns(UserWarning, match=r"does not record its pooling.*pool='mean'"):
        untold = load_pretrained(path, **told)
    assert untold.config.pool == "token"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_pretrained(path, **told, pool="mean").config.pool == "mean"


@pytest.mark.parametrize(
    ("timm_config", "pool"),
    [
        ({"global_pool": "avg"}, "mean"),
        ({"global_pool": "token"}, "token"),
        ({"model_args": {"global_pool": "avg"}, "global_pool": "token"}, "mean"),
        ({}, "token"),  # timm's default
    ],
)
def test_a_timm_config_json_tells_the_pooling(
    tmp_path: Path, timm_config: dict[str, Any], pool: str
) -> None:
    from safetensors.torch import save_file

    state = load_file(str(FIXTURES / "timm_nonsquare" / "state_dict.safetensors"))
    save_file(state, str(tmp_path / "model.safetensors"))
    config = {"architecture": "vit_tiny_patch8_224", "num_classes": 4, **timm_config}
    config["pretrained_cfg"] = {"input_size": [1, 32, 48], "mean": [0.5], "std": [0.5]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load_pretrained(tmp_path)
    assert model.config.pool == pool
    if pool == "mean":
        _assert_same_logits(model, "timm_nonsquare")


def test_a_timm_pooling_vitlib_does_not_have_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file(
        load_file(str(FIXTURES / "timm_token" / "state_dict.safetensors")),
        str(tmp_path / "model.safetensors"),
    )
    config = {"architecture": "vit_tiny_patch8_224", "num_classes": 5, "global_pool": "map"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(vitlib.CheckpointError, match=r"'global_pool' is 'map'"):
        load_pretrained(tmp_path)


@pytest.mark.parametrize("name", NPZ_FIXTURES)
def test_google_npz_gives_the_reference_logits_without_being_told_the_heads(name: str) -> None:
    model = load_pretrained(FIXTURES / name / "weights.npz")
    assert model.config.num_heads == _meta(name)["config"]["num_heads"]
    _assert_same_logits(model, name)


@pytest.mark.parametrize("name", STATE_DICT_FIXTURES)
def test_family_is_detected_from_the_keys(name: str) -> None:
    state = load_file(str(FIXTURES / name / "state_dict.safetensors"))
    assert detect_family(state) == _meta(name)["library"]


def test_timm_export_round_trips_exactly_and_matches_timm_names() -> None:
    state = load_file(str(FIXTURES / "timm_token" / "state_dict.safetensors"))
    model = load_pretrained(state, num_heads=3)
    exported = export_state_dict(model, "timm")
    assert set(exported) == set(state)
    for key, tensor in state.items():
        assert torch.equal(exported[key], tensor), key
    back = convert_state_dict(exported).state_dict
    for key, tensor in model.state_dict().items():
        assert torch.equal(back[key], tensor), key


# ---- Hugging Face transformers, live ------------------------------------------------------------
# Imported by the tests that use it, so that a missing or broken transformers skips these alone and
# never the timm, torchvision, npz and chapter tests above and below (CI fails on any skip).


@pytest.fixture(scope="module")
def transformers() -> Any:
    return pytest.importorskip("transformers", reason="the dev requirements install it")


def _hf_config(transformers: Any, **changes: Any) -> Any:
    values: dict[str, Any] = {
        "hidden_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 3,
        "intermediate_size": 96,
        "image_size": 32,
        "patch_size": 8,
        "num_channels": 3,
        "num_labels": 5,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }
    values.update(changes)
    return transformers.ViTConfig(**values)


def _randomise(module: torch.nn.Module) -> None:
    """Re-draw every weight so that a swapped or transposed tensor cannot go unnoticed."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            base = 1.0 if name.endswith("layernorm_before.weight") else 0.0
            parameter.copy_(base + 0.2 * torch.randn_like(parameter))


@pytest.fixture(scope="module")
def hf_classifier(transformers: Any) -> Any:
    model = transformers.ViTForImageClassification(_hf_config(transformers)).eval()
    _randomise(model)
    return model


def test_huggingface_save_pretrained_directory_gives_the_same_logits(
    hf_classifier: Any, tmp_path: Path
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf_classifier.save_pretrained(tmp_path)
    model = load_pretrained(tmp_path).eval()
    assert model.config.layer_norm_eps == 1e-12
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = hf_classifier(pixel_values=images).logits
        torch.testing.assert_close(model(images), expected, atol=1e-5, rtol=1e-5)


def test_huggingface_in_memory_state_dict_loads_too(hf_classifier: Any) -> None:
    model = load_pretrained(hf_classifier.state_dict(), num_heads=3, layer_norm_eps=1e-12).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = hf_classifier(pixel_values=images).logits
        torch.testing.assert_close(model(images), expected, atol=1e-5, rtol=1e-5)


def test_huggingface_vit_model_pooler_is_the_pre_logits_layer(
    transformers: Any, tmp_path: Path
) -> None:
    backbone = transformers.ViTModel(_hf_config(transformers)).eval()
    _randomise(backbone)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backbone.save_pretrained(tmp_path)
    model = load_pretrained(tmp_path).eval()
    assert model.config.num_classes == 0
    assert model.config.representation_size == 48
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        output = backbone(pixel_values=images)
        torch.testing.assert_close(model(images), output.pooler_output, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            model.forward_features(images), output.last_hidden_state, atol=1e-5, rtol=1e-5
        )


def test_vitlib_saves_a_directory_transformers_loads(transformers: Any, tmp_path: Path) -> None:
    torch.manual_seed(1)
    model = vitlib.ViT(
        img_size=32,
        patch_size=8,
        num_transformer_layers=2,
        embedding_dim=48,
        mlp_size=96,
        num_heads=3,
        num_classes=4,
        layer_norm_eps=1e-6,
    ).eval()
    vitlib.save_pretrained(model, tmp_path / "hf", format="huggingface")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = transformers.ViTForImageClassification.from_pretrained(tmp_path / "hf").eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(pixel_values=images).logits, model(images), atol=1e-5, rtol=1e-5
        )


def test_huggingface_export_round_trips_exactly(hf_classifier: Any, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf_classifier.save_pretrained(tmp_path)
    on_disk = load_file(str(tmp_path / "model.safetensors"))
    model = load_pretrained(tmp_path)
    exported = export_state_dict(model, "huggingface")
    assert set(exported) == set(on_disk)
    for key, tensor in on_disk.items():
        assert torch.equal(exported[key], tensor), key


# ---- the learnpytorch.io chapter -----------------------------------------------------------------


def test_chapter_vit_loads_with_the_same_logits() -> None:
    torch.manual_seed(0)
    reference = chapter.ViT(
        img_size=32,
        patch_size=8,
        num_transformer_layers=2,
        embedding_dim=48,
        mlp_size=96,
        num_heads=3,
        num_classes=3,
    ).eval()
    _randomise(reference)
    model = load_pretrained(reference.state_dict(), num_heads=3).eval()
    assert model.config.layer_norm_eps == 1e-5
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference(images), atol=1e-5, rtol=1e-5)


def test_chapter_code_runs_unchanged_on_vitlib_blocks() -> None:
    """The chapter's calls, with its argument names, against vitlib's classes."""
    patch_embedding = vitlib.PatchEmbedding(in_channels=3, patch_size=16, embedding_dim=768)
    patches = patch_embedding(torch.randn(1, 3, 224, 224))
    assert patches.shape == (1, 196, 768)
    msa = vitlib.MultiheadSelfAttentionBlock(embedding_dim=768, num_heads=12, attn_dropout=0.0)
    mlp = vitlib.MLPBlock(embedding_dim=768, mlp_size=3072, dropout=0.1)
    block = vitlib.TransformerEncoderBlock(
        embedding_dim=768, num_heads=12, mlp_size=3072, mlp_dropout=0.1, attn_dropout=0.0
    )
    assert msa(patches).shape == mlp(patches).shape == block(patches).shape == (1, 196, 768)
    vit = vitlib.ViT(num_classes=3)
    assert vit(torch.randn(1, 3, 224, 224)).shape == (1, 3)
