"""Saving and loading files: round trips, refusals, and errors that name what is wrong."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import vitlib
from vitlib import CheckpointError, ConfigError, load_pretrained, save_pretrained
from vitlib.checkpoints import export_state_dict
from vitlib.checkpoints.precedence import ConfigSources, resolve_configs
from vitlib.checkpoints.shapes import ShapeFacts

from .helpers import FIXTURES, tiny_vit, unreadable

TIMM = FIXTURES / "timm_token" / "state_dict.safetensors"


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"representation_size": 7, "pool": "mean", "num_register_tokens": 2},
        {"layer_scale_init": 0.1},
    ],
)
def test_save_and_load_round_trip_exactly(tmp_path: Path, changes: dict[str, Any]) -> None:
    model = tiny_vit(**changes)
    save_pretrained(model, tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    loaded = load_pretrained(tmp_path / "run")
    assert loaded.config == model.config
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key


def test_saving_over_an_existing_directory_is_refused_unless_asked(tmp_path: Path) -> None:
    target = tmp_path / "run"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"already exists and is not empty.*overwrite=True"):
        save_pretrained(tiny_vit(), target)
    assert (target / "notes.txt").read_text() == "mine"
    save_pretrained(tiny_vit(), target, overwrite=True)
    assert (target / "notes.txt").read_text() == "mine", "overwrite replaces only the checkpoint"
    assert sorted(p.name for p in target.iterdir()) == [
        "config.json",
        "model.safetensors",
        "notes.txt",
    ], "no staging folders left behind"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_saving_into_an_empty_existing_directory_is_fine(tmp_path: Path) -> None:
    save_pretrained(tiny_vit(), tmp_path)
    assert (tmp_path / "config.json").exists()


def test_single_weight_files_of_each_kind_load(tmp_path: Path) -> None:
    state = load_file(str(TIMM))
    torch.save(state, tmp_path / "timm.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ddp.pt")
    # torch.compile's wrapper and Lightning's module prefix its parameters' names.
    torch.save({f"_orig_mod.{k}": v for k, v in state.items()}, tmp_path / "compiled.pt")
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}}, tmp_path / "pl.ckpt")
    reference = load_pretrained(TIMM, num_heads=3)
    for name in ("timm.pth", "ddp.pt", "compiled.pt", "pl.ckpt"):
        model = load_pretrained(tmp_path / name, num_heads=3)
        for key, tensor in reference.state_dict().items():
            assert torch.equal(model.state_dict()[key], tensor), (name, key)


def test_torchvision_weights_from_before_0_13_load_by_their_old_mlp_names(tmp_path: Path) -> None:
    folder = FIXTURES / "torchvision_plain"
    state = load_file(str(folder / "state_dict.safetensors"))
    old_names = {
        key.replace(".mlp.0.", ".mlp.linear_1.").replace(".mlp.3.", ".mlp.linear_2."): value
        for key, value in state.items()
    }
    assert any(".mlp.linear_1." in key for key in old_names)
    save_file(old_names, str(tmp_path / "old_torchvision.safetensors"))
    hints = {"num_heads": 3}
    reference = load_pretrained(folder / "state_dict.safetensors", **hints)
    model = load_pretrained(tmp_path / "old_torchvision.safetensors", **hints)
    for key, tensor in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], tensor), key


class _Payload:
    """A pickle that would create a file when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_a_pickle_carrying_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with path.open("wb") as handle:
        pickle.dump({"patch_embed.proj.weight": _Payload(marker)}, handle)
    with pytest.raises(CheckpointError, match=r"was refused: .*nothing was executed"):
        load_pretrained(path)
    torch.save({"weights": _Payload(marker)}, tmp_path / "evil_zip.pt")
    with pytest.raises(CheckpointError, match="was refused"):
        load_pretrained(tmp_path / "evil_zip.pt")
    assert not marker.exists()


def test_an_npz_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "objects.npz"
    np.savez(path, cls=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="holds pickled Python objects"):
        load_pretrained(path)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".npz"])
def test_truncated_files_raise_checkpoint_errors(tmp_path: Path, suffix: str) -> None:
    state = load_file(str(TIMM))
    full = tmp_path / f"full{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(full))
    elif suffix == ".pth":
        torch.save(state, full)
    else:
        full.write_bytes((FIXTURES / "google_npz" / "weights.npz").read_bytes())
    truncated = tmp_path / f"truncated{suffix}"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"corrupt|truncated"):
        load_pretrained(truncated)


def test_unknown_suffix_and_unknown_format(tmp_path: Path) -> None:
    (tmp_path / "weights.h5").write_bytes(b"\x89HDF")
    with pytest.raises(CheckpointError, match=r"unknown weights format '.h5'"):
        load_pretrained(tmp_path / "weights.h5")
    save_file({"encoder.conv1.weight": torch.zeros(1)}, str(tmp_path / "resnet.safetensors"))
    with pytest.raises(
        CheckpointError, match=r"unrecognised checkpoint format.*encoder.conv1.weight"
    ):
        load_pretrained(tmp_path / "resnet.safetensors")


def test_missing_and_unexpected_keys_are_named() -> None:
    state = load_file(str(TIMM))
    del state["blocks.1.mlp.fc2.weight"]
    with pytest.raises(
        CheckpointError, match=r"missing keys \['transformer_encoder.1.mlp_block.fc2.weight'\]"
    ):
        load_pretrained(state, num_heads=3)
    state = load_file(str(TIMM))
    state["blocks.0.attn.q_norm.weight"] = torch.ones(16)
    with pytest.raises(
        CheckpointError,
        match=r"unexpected keys for a timm ViT checkpoint: \['blocks.0.attn.q_norm.weight'\]",
    ):
        load_pretrained(state, num_heads=3)


def test_shape_mismatch_names_key_got_and_expected() -> None:
    state = load_file(str(TIMM))
    state["blocks.0.attn.proj.bias"] = torch.zeros(47)
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatch for 1 tensor\(s\) of the timm checkpoint: "
        r"transformer_encoder.0.msa_block.out_proj.bias: checkpoint \(47,\), model \(48,\)\.",
    ):
        load_pretrained(state, num_heads=3)


def test_every_shape_mismatch_is_listed() -> None:
    """K03: an odd fc1 weight in layer 0 sets the inferred mlp_size, so the mismatches show up
    elsewhere; all of them are listed, not just the first."""
    state = load_file(str(TIMM))
    state["blocks.0.mlp.fc1.weight"] = torch.zeros(97, 48)
    with pytest.raises(
        CheckpointError,
        match=r"shape mismatch for 5 tensor\(s\).*1.mlp_block.fc1.weight.*0.mlp_block.fc1.bias",
    ):
        load_pretrained(state, num_heads=3)


def test_num_heads_is_required_when_nothing_tells_it() -> None:
    with pytest.raises(CheckpointError, match=r"cannot tell num_heads .* Pass num_heads="):
        load_pretrained(TIMM)


def test_num_heads_and_image_size_come_from_a_matching_preset() -> None:
    reference = vitlib.create_model("ViT-Ti/16", num_classes=10)
    timm_state = vitlib.checkpoints.export_state_dict(reference, "timm")
    model = load_pretrained(timm_state)
    assert model.config.num_heads == 3
    assert model.config.img_size == 224


def test_structural_overrides_are_refused() -> None:
    with pytest.raises(
        CheckpointError, match=r"embedding_dim=64: its weights have embedding_dim=48"
    ):
        load_pretrained(TIMM, num_heads=3, embedding_dim=64)
    with pytest.raises(
        TypeError,
        match=r"load_pretrained got unknown ViTConfig field\(s\) 'num_head' "
        r"\(did you mean 'num_heads'\?\)",
    ):
        load_pretrained(TIMM, num_head=3)


def test_missing_path_and_bad_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_pretrained(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="expected one weights file"):
        load_pretrained(tmp_path)
    with pytest.raises(TypeError, match="source must be a path"):
        load_pretrained(42)  # type: ignore[arg-type]


def test_config_that_contradicts_the_weights_is_refused(tmp_path: Path) -> None:
    model = tiny_vit()
    save_pretrained(model, tmp_path / "hf", format="huggingface")
    config = (
        (tmp_path / "hf" / "config.json")
        .read_text()
        .replace('"hidden_size": 12', '"hidden_size": 24')
    )
    (tmp_path / "hf" / "config.json").write_text(config)
    with pytest.raises(CheckpointError, match="config and the weights do not belong together"):
        load_pretrained(tmp_path / "hf")


def test_huggingface_export_refuses_what_it_cannot_express() -> None:
    with pytest.raises(CheckpointError, match=r"Hugging Face's ViT cannot express pool='mean'"):
        vitlib.checkpoints.export_state_dict(tiny_vit(pool="mean"), "huggingface")
    with pytest.raises(CheckpointError, match="no pre-logits layer"):
        vitlib.checkpoints.export_state_dict(tiny_vit(representation_size=4), "timm")


def test_export_state_dict_names_the_families_of_the_registry_it_writes() -> None:
    with pytest.raises(
        ConfigError,
        match=r"family must be one of 'vitlib', 'timm', 'huggingface', got 'torchvision'",
    ):
        vitlib.checkpoints.export_state_dict(tiny_vit(), "torchvision")
    assert vitlib.checkpoints.FAMILIES["timm"].from_vitlib is not None
    assert vitlib.checkpoints.FAMILIES["torchvision"].from_vitlib is None


# ---- which source wins (vitlib.checkpoints.precedence) ------------------------------------------

#: What the tensors of a ViT-Ti/16 at 224 px fix; the preset guess for its heads is 3.
TI_TENSORS = ShapeFacts(
    embedding_dim=192,
    in_channels=3,
    patch_size=16,
    num_transformer_layers=12,
    mlp_size=768,
    qkv_bias=True,
    class_token=True,
    num_register_tokens=0,
    representation_size=None,
    num_classes=10,
    gamma_mean=None,
    grid_tokens=196,
)


def _resolve(**sources: Any) -> tuple[vitlib.ViTConfig, vitlib.ViTConfig]:
    return resolve_configs(ConfigSources("timm", TI_TENSORS, **sources))


def test_each_field_comes_from_the_strongest_source_that_tells_it() -> None:
    guessed, _ = _resolve()
    assert (guessed.num_heads, guessed.img_size, guessed.mlp_dropout) == (3, 224, 0.0)
    hinted, _ = _resolve(hints={"num_heads": 6, "img_size": (112, 448), "layer_norm_eps": 1e-5})
    assert (hinted.num_heads, hinted.img_size, hinted.layer_norm_eps) == (6, (112, 448), 1e-5)
    stated, _ = _resolve(stated={"num_heads": 4, "layer_norm_eps": 1e-12}, hints={"num_heads": 4})
    assert (stated.num_heads, stated.layer_norm_eps) == (4, 1e-12)
    overridden, _ = _resolve(stated={"layer_norm_eps": 1e-12}, overrides={"layer_norm_eps": 1e-5})
    assert overridden.layer_norm_eps == 1e-5, "a free field is the caller's"
    told, _ = _resolve(overrides={"num_heads": 12})
    assert told.num_heads == 12, "an override gives num_heads before the preset guess"


def test_sources_that_contradict_the_tensors_or_a_stated_num_heads_are_refused() -> None:
    with pytest.raises(CheckpointError, match="config says mlp_size=3072 but its tensors have"):
        _resolve(stated={"mlp_size": 3072})
    with pytest.raises(CheckpointError, match="config says embedding_dim=768 but its tensors"):
        _resolve(hints={"embedding_dim": 768})
    with pytest.raises(CheckpointError, match="mlp_size=3072: its weights have mlp_size=768"):
        _resolve(overrides={"mlp_size": 3072})
    with pytest.raises(CheckpointError, match="states num_heads=3, but num_heads=6 was given"):
        _resolve(stated={"num_heads": 3}, overrides={"num_heads": 6})


def test_adaptable_overrides_change_the_model_and_not_the_checkpoint() -> None:
    changes = {"img_size": 384, "num_classes": 3, "in_channels": 1}
    checkpoint, model = _resolve(overrides=changes)
    assert (checkpoint.img_size, checkpoint.num_classes, checkpoint.in_channels) == (224, 10, 3)
    assert model == checkpoint.replace(**changes)


def test_layer_scale_init_is_what_the_gammas_say_when_nothing_states_it(tmp_path: Path) -> None:
    """The initial value is not in a timm state dict; the mean magnitude of the gammas stands
    in, so a later save records what the weights hold and no placeholder."""
    fresh = export_state_dict(tiny_vit(layer_scale_init=0.1), "timm")
    assert load_pretrained(fresh, num_heads=3).config.layer_scale_init == 0.1
    trained = {key: tensor * 3 if ".ls" in key else tensor for key, tensor in fresh.items()}
    trained["blocks.0.ls1.gamma"][0] = -2.0
    gammas = torch.cat([trained[k] for k in trained if ".ls" in k])
    model = load_pretrained(trained, num_heads=3)
    expected = float(str(np.float32(gammas.double().abs().mean().item())))
    assert model.config.layer_scale_init == expected != 0.1 * 3
    save_pretrained(model, tmp_path / "ck")
    assert load_pretrained(tmp_path / "ck").config.layer_scale_init == expected
    assert (
        load_pretrained(trained, num_heads=3, layer_scale_init=1e-6).config.layer_scale_init == 1e-6
    )


def test_layer_scale_init_stated_by_the_config_is_kept(tmp_path: Path) -> None:
    model = tiny_vit(layer_scale_init=1e-5)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("scale.gamma"):
                parameter.fill_(0.5)
    save_pretrained(model, tmp_path / "ck")
    assert load_pretrained(tmp_path / "ck").config.layer_scale_init == 1e-5


def test_gammas_that_give_no_valid_layer_scale_init_ask_for_it() -> None:
    state = export_state_dict(tiny_vit(layer_scale_init=0.1), "timm")
    dead = {key: tensor * 0 if ".ls" in key else tensor for key, tensor in state.items()}
    with pytest.raises(CheckpointError, match=r"mean magnitude, 0\.0, .*pass layer_scale_init="):
        load_pretrained(dead, num_heads=3)
    assert load_pretrained(dead, num_heads=3, layer_scale_init=1e-5).config.layer_scale_init == 1e-5


def test_a_weights_file_that_may_not_be_read_says_permission_denied(shared_tmp: Path) -> None:
    save_pretrained(tiny_vit(), shared_tmp / "ck")
    weights = shared_tmp / "ck" / "model.safetensors"
    with unreadable(weights), pytest.raises(PermissionError) as caught:
        load_pretrained(shared_tmp / "ck")
    message = str(caught.value)
    assert f"permission denied reading {weights}" in message
    assert "corrupt" not in message
    assert "No such file" not in message


def test_a_folder_where_a_file_would_go_is_refused_before_anything_moves(tmp_path: Path) -> None:
    """Even with overwrite=True: a file never replaces a folder, and the destination stays
    usable (no half-committed save left behind)."""
    target = tmp_path / "ck"
    save_pretrained(tiny_vit(), target)
    (target / "model.safetensors").unlink()
    (target / "model.safetensors").mkdir()
    (target / "model.safetensors" / "mine.txt").write_text("kept")
    with pytest.raises(IsADirectoryError, match=r"model.safetensors is a folder, where"):
        save_pretrained(tiny_vit(seed=1), target, overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors"]
    assert (target / "model.safetensors" / "mine.txt").read_text() == "kept"


def test_save_pretrained_checks_its_arguments_and_refuses_an_int8_copy(tmp_path: Path) -> None:
    refused = r"overwrite must be a bool \(True or False\), got 'no'"
    with pytest.raises(vitlib.InputTypeError, match=refused):
        save_pretrained(tiny_vit(), tmp_path / "a", overwrite="no")  # type: ignore[arg-type]
    with pytest.raises(vitlib.InputTypeError, match="directory must be a folder path"):
        save_pretrained(tiny_vit(), 3)  # type: ignore[arg-type]
    int8 = vitlib.optimize_for_inference(tiny_vit(), "int8")
    with pytest.raises(CheckpointError, match=r"int8-quantised .* Save the float32 model"):
        save_pretrained(int8, tmp_path / "b")
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "b").exists()
