"""Hostile input, one parametrised test per class of failure (see docs/reliability.md).

The case ids (K01, ...) are those of the project's reliability probe of 2026-11-27, a report
kept outside this repository; docs/reliability.md states the guarantees they led to. Each
class states a guarantee:

- silent wrong answers: input that used to be accepted and gave a wrong model or result is refused;
- clear errors: input that used to end in a raw error from torch, numpy or the standard library
  gets a vitlib error (or the conventional built-in) naming what was given and the fix;
- nothing lost: saving over a folder replaces only what vitlib wrote, and no crash loses a model;
- nothing hangs: each case runs in a subprocess with a time limit.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import vitlib
from vitlib import (
    CheckpointError,
    ConfigError,
    InputShapeError,
    InputTypeError,
    MLPBlock,
    MultiheadSelfAttentionBlock,
    PatchEmbedding,
    TransformerEncoderBlock,
    ViT,
    ViTConfig,
    load_pretrained,
)
from vitlib import _checks as validation
from vitlib.blocks import LayerScale
from vitlib.checkpoints import NonFiniteWeightsWarning
from vitlib.cli import main

T: dict[str, Any] = {
    "img_size": 32,
    "patch_size": 8,
    "num_transformer_layers": 2,
    "embedding_dim": 32,
    "mlp_size": 64,
    "num_heads": 2,
    "num_classes": 3,
}
GiB = 2**30
FIXTURES = Path(__file__).parent / "fixtures" / "reference"


def _bad(**fields: Any) -> dict[str, Any]:
    """Keyword arguments of deliberately wrong types, hidden from the type checker."""
    return fields


def _model() -> ViT:
    torch.manual_seed(0)
    return ViT(**T).eval()


def _images(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(dtype)


# Input that was accepted and silently gave a wrong model or wrong outputs.
SILENT_WRONG_ANSWERS = [
    pytest.param(
        lambda: ViT(**T, layer_norm_eps=math.inf), ConfigError, "layer_norm_eps", id="C11c"
    ),
    pytest.param(
        lambda: ViTConfig(layer_norm_eps=1e308),
        ConfigError,
        r"in \(0, 0.1\], got 1e\+308",
        id="K09k",
    ),
    pytest.param(lambda: ViTConfig(**_bad(layer_norm_eps=True)), TypeError, "got True", id="C11d"),
    pytest.param(
        lambda: ViT(**T, layer_scale_init=math.inf), ConfigError, "layer_scale_init", id="C11f"
    ),
    pytest.param(
        lambda: ViT(**T, **_bad(qkv_bias="false")), TypeError, "qkv_bias must be a bool", id="C13a"
    ),
    pytest.param(
        lambda: ViTConfig.from_dict({**T, "class_token": "no", "pool": "mean"}),
        TypeError,
        "class_token must be a bool",
        id="C13b",
    ),
    pytest.param(
        lambda: ViT(**T, **_bad(dynamic_img_size="false")),
        TypeError,
        "dynamic_img_size must be a bool",
        id="C13c",
    ),
    pytest.param(
        lambda: PatchEmbedding(in_channels=0, patch_size=8, embedding_dim=8),
        ConfigError,
        "in_channels must be an int >= 1, got 0",
        id="C25b",
    ),
    pytest.param(
        lambda: MultiheadSelfAttentionBlock(8, 2, **_bad(qkv_bias=1)),
        TypeError,
        "qkv_bias",
        id="block-qkv",
    ),
    pytest.param(
        lambda: TransformerEncoderBlock(8, 2, 16, layer_norm_eps=float("nan")),
        ConfigError,
        "layer_norm_eps",
        id="block-eps-nan",
    ),
    pytest.param(lambda: LayerScale(8, 0.0), ConfigError, "init_value", id="block-scale-0"),
]


@pytest.mark.parametrize(("make", "error", "message"), SILENT_WRONG_ANSWERS)
def test_silent_wrong_answers_are_refused(
    make: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make()


# Input that ended in a raw error from deep inside torch, numpy or the standard library.
UNCLEAR_ERRORS = [
    pytest.param(
        lambda: ViTConfig(**_bad(layer_scale_init="abc")),
        TypeError,
        r"layer_scale_init must be None \(off\) or a number .*got 'abc'",
        id="C11e",
    ),
    pytest.param(
        lambda: ViT(**T, **_bad(class_token="no", pool="mean")),
        TypeError,
        "class_token must be a bool",
        id="C13b2",
    ),
    pytest.param(
        lambda: MLPBlock(8, -1), ConfigError, "mlp_size must be an int >= 1, got -1", id="C25d"
    ),
    pytest.param(
        lambda: _model()(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)),
        InputTypeError,
        r"dtype uint8.*images\.float\(\)",
        id="F04",
    ),
    pytest.param(
        lambda: _model()(torch.zeros(2, 3, 32, 32, dtype=torch.int64)),
        InputTypeError,
        "dtype int64",
        id="F05",
    ),
    pytest.param(
        lambda: _model()(_images(torch.float64)),
        InputTypeError,
        r"float64 but the model's weights are float32; cast with images\.to\(torch\.float32\)",
        id="F05b",
    ),
    pytest.param(lambda: _model()(_images(torch.bool)), InputTypeError, "dtype bool", id="F05c"),
    pytest.param(
        lambda: _model()(_images(torch.float16)),
        InputTypeError,
        r"float16 .* torch\.autocast\('cpu', dtype=torch\.float16\)",
        id="F10",
    ),
    pytest.param(lambda: _model()(_images(torch.bfloat16)), InputTypeError, "bfloat16", id="F11"),
    pytest.param(
        lambda: _model().bfloat16()(_images()),
        InputTypeError,
        "weights are bfloat16",
        id="F11b",
    ),
    pytest.param(
        lambda: _model().half()(_images()), InputTypeError, "weights are float16", id="F21"
    ),
    pytest.param(
        lambda: _model()(torch.randn(2, 3, 32, 32, device="meta")),
        InputTypeError,
        r"images are on meta, the model's weights on cpu; move them with images\.to\('cpu'\)",
        id="F13",
    ),
    pytest.param(
        lambda: _model()(_images().numpy()),
        InputTypeError,
        r"got ndarray; convert it with torch\.from_numpy",
        id="F16",
    ),
    pytest.param(lambda: _model()(_images().tolist()), InputTypeError, "got list", id="F17"),
    pytest.param(
        lambda: _model().forward_head(torch.randn(2, 32)),
        InputShapeError,
        r"forward_head expects .*\(batch, tokens, 32\), got \(2, 32\)",
        id="F20",
    ),
    pytest.param(
        lambda: _model().forward_head(torch.randn(2, 1, 32)),
        InputShapeError,
        "at least one patch token",
        id="F20b",
    ),
    pytest.param(
        lambda: ViT(**{**T, "embedding_dim": 10**9, "num_heads": 1}),
        ConfigError,
        r"parameters, .* GiB in float32, more than .* of memory .* encoder "
        r"\(num_transformer_layers=2 layers .* embedding_dim=1000000000",
        id="A1",
    ),
    pytest.param(
        lambda: ViT(**{**T, "img_size": 2**20, "patch_size": 1}),
        ConfigError,
        r"position embedding \(img_size=1048576 / patch_size=1",
        id="A4",
    ),
    pytest.param(
        lambda: vitlib.create_model("ViT-H/14", mlp_size=10**8),
        ConfigError,
        r"mlp_size=100000000",
        id="A5",
    ),
]


@pytest.mark.parametrize(("make", "error", "message"), UNCLEAR_ERRORS)
def test_errors_are_clear(make: Callable[[], object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        make()


def test_nothing_is_checked_or_allocated_on_the_meta_device() -> None:
    with torch.device("meta"):
        model = ViT(**{**T, "embedding_dim": 2**20, "mlp_size": 2**20, "num_heads": 1})
    assert model.position_embedding.is_meta


def test_huge_embedding_dim_hint_is_instant() -> None:
    """A2: the divisor hint no longer enumerates every divisor up to embedding_dim."""
    with pytest.raises(ConfigError, match=r"e\.g\. 10, 11, 13"):
        ViTConfig(embedding_dim=11 * 13 * 10**16, num_heads=12)


def test_autocast_accepts_low_precision_images() -> None:
    model = _model()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(_images(torch.bfloat16)).shape == (2, 3)


NOT_BOOLS = st.one_of(
    st.text(), st.integers(), st.floats(allow_nan=False), st.none(), st.just([True])
)


@given(field=st.sampled_from(["qkv_bias", "class_token", "dynamic_img_size"]), value=NOT_BOOLS)
def test_every_bool_field_refuses_non_bools(field: str, value: object) -> None:
    with pytest.raises(TypeError, match=re.escape(f"{field} must be a bool")):
        ViTConfig(**_bad(**{field: value, "pool": "mean"}))


@given(value=st.one_of(st.floats(), st.booleans(), st.text(max_size=3)))
def test_layer_norm_eps_is_a_finite_small_positive_float(value: object) -> None:
    valid = (
        isinstance(value, float)
        and math.isfinite(value)
        and 0 < value <= validation.MAX_LAYER_NORM_EPS
    )
    if valid:
        assert ViTConfig(**_bad(layer_norm_eps=value)).layer_norm_eps == value
    else:
        with pytest.raises((TypeError, ConfigError), match="layer_norm_eps"):
            ViTConfig(**_bad(layer_norm_eps=value))


# --- checkpoints ----------------------------------------------------------------------------


@pytest.fixture
def checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A valid vitlib checkpoint folder ``ck`` of the 2-head tiny model, in the cwd."""
    monkeypatch.chdir(tmp_path)
    vitlib.save_pretrained(_model(), "ck")
    return tmp_path / "ck"


def _edit_config(folder: Path, **changes: Any) -> Path:
    """Change fields of the vitlib config in ``folder``'s config.json; return ``folder``."""
    path = folder / "config.json"
    data = json.loads(path.read_text())
    data["config"].update(changes)
    path.write_text(json.dumps(data))
    return folder


def _state(**changes: torch.Tensor) -> dict[str, torch.Tensor]:
    return {**_model().state_dict(), **changes}


CHECKPOINT_SILENT_WRONG_ANSWERS = [
    pytest.param(
        lambda ck: load_pretrained({k: (v * 100).to(torch.int32) for k, v in _state().items()}),
        CheckpointError,
        r"not real floating point: .*\(int32\).*re-export the float weights",
        id="K06",
    ),
    pytest.param(
        lambda ck: load_pretrained(
            _state(
                **{
                    "transformer_encoder.0.msa_block.qkv.weight": torch.zeros(96, 32).to(
                        torch.complex64
                    )
                }
            )
        ),
        CheckpointError,
        r"transformer_encoder\.0\.msa_block\.qkv\.weight \(complex64\)",
        id="K22l",
    ),
    pytest.param(
        lambda ck: load_pretrained(_edit_config(ck, embedding_dim=64)),
        CheckpointError,
        r"config says embedding_dim=64 but its tensors have embedding_dim=32",
        id="K09f",
    ),
    pytest.param(
        lambda ck: load_pretrained(_edit_config(ck, dynamic_img_size="false")),
        CheckpointError,
        r"ck/config\.json is not a valid model config: dynamic_img_size must be a bool",
        id="K09j",
    ),
    pytest.param(
        lambda ck: load_pretrained(_edit_config(ck, layer_norm_eps=1e308)),
        CheckpointError,
        r"ck/config\.json .*layer_norm_eps",
        id="K09k",
    ),
    pytest.param(
        lambda ck: load_pretrained(_edit_config(ck, layer_scale_init=1e-5)),
        CheckpointError,
        r"config says layer_scale_init=1e-05 but its tensors have no LayerScale",
        id="layer-scale-contradiction",
    ),
    pytest.param(
        lambda ck: load_pretrained(ck, layer_scale_init=1e-5),
        CheckpointError,
        r"with layer_scale_init=1e-05: its weights have no LayerScale",
        id="layer-scale-override",
    ),
    pytest.param(
        lambda ck: load_pretrained(_model(), num_heads=4),
        CheckpointError,
        r"states num_heads=2, but num_heads=4 was given.*Drop the num_heads override",
        id="K17g",
    ),
    pytest.param(
        lambda ck: load_pretrained(ck, num_heads=4), CheckpointError, "num_heads=2", id="K17g-dir"
    ),
]


@pytest.mark.parametrize(("make", "error", "message"), CHECKPOINT_SILENT_WRONG_ANSWERS)
def test_checkpoints_that_would_load_wrong_are_refused(
    checkpoint: Path, make: Callable[[Path], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make(checkpoint)


def test_non_finite_weights_are_named_in_a_warning() -> None:
    """K06c: NaN weights still load (to inspect them) but never silently."""
    state = _state(**{"norm.weight": torch.full((32,), math.nan)})
    with pytest.warns(NonFiniteWeightsWarning, match=r"\['norm\.weight'\].*output NaN"):
        load_pretrained(state, num_heads=2)


def _write_config(folder: Path, text: str) -> Path:
    """Replace ``folder``'s config.json with ``text``; return ``folder``."""
    (folder / "config.json").write_text(text)
    return folder


def _symlink_to(target: str, link: str) -> Path:
    os.symlink(target, link)
    return Path(link)


def _timm_state() -> dict[str, torch.Tensor]:
    return vitlib.checkpoints.export_state_dict(_model(), "timm")


def _npz_with_rank2_kernel(ck: Path) -> Path:
    arrays = dict(np.load(FIXTURES / "google_npz" / "weights.npz"))
    arrays["embedding/kernel"] = arrays["embedding/kernel"].reshape(
        -1, arrays["embedding/kernel"].shape[-1]
    )
    np.savez("bad.npz", **arrays)
    return Path("bad.npz")


def _folder_with_only(name: str) -> Path:
    os.mkdir("p")
    torch.save(_model().state_dict(), f"p/{name}")
    return Path("p")


CHECKPOINT_UNCLEAR_ERRORS = [
    pytest.param(
        lambda ck: load_pretrained(_write_config(ck, '{"format": "vitlib", "config": [1, 2]}')),
        CheckpointError,
        r"ck/config\.json is not a valid model config: its 'config' must be a JSON object",
        id="K09a",
    ),
    pytest.param(
        lambda ck: load_pretrained(_write_config(ck, '{"format": "vitlib", "config": "abc"}')),
        CheckpointError,
        r"ck/config\.json .*got str",
        id="K09b",
    ),
    pytest.param(
        lambda ck: load_pretrained(_edit_config(ck, evil=1)),
        CheckpointError,
        r"ck/config\.json is not a valid model config: .*unknown ViTConfig field\(s\) 'evil'",
        id="K09c",
    ),
    pytest.param(
        lambda ck: load_pretrained(
            _write_config(ck, '{"architecture": "vit_base_patch16_224", "pretrained_cfg": []}')
        ),
        CheckpointError,
        r"ck/config\.json .*'pretrained_cfg' must be a JSON object, got list",
        id="K09o",
    ),
    pytest.param(
        lambda ck: load_pretrained(
            _write_config(ck, '{"format": "vitlib", "config": ' + "[" * 100_000)
        ),
        CheckpointError,
        r"ck/config\.json as JSON",
        id="K09s",
    ),
    pytest.param(
        lambda ck: load_pretrained(
            _write_config(ck, '{"model_type": "vit", "num_attention_heads": "2"}')
        ),
        CheckpointError,
        r"ck/config\.json .*num_heads must be an int",
        id="K09m",
    ),
    pytest.param(
        lambda ck: load_pretrained("ftp://example.com/x.pth"),
        CheckpointError,
        r"'ftp' URLs are not supported; expected an http\(s\) URL",
        id="K12g",
    ),
    pytest.param(
        lambda ck: load_pretrained(_symlink_to("/dev/zero", "z.safetensors")),
        CheckpointError,
        r"z\.safetensors is a device; vitlib reads checkpoints from regular files only",
        id="K13d",
    ),
    pytest.param(
        lambda ck: load_pretrained(_symlink_to("/dev/urandom", "z.pth")),
        CheckpointError,
        "is a device",
        id="K13d-urandom",
    ),
    pytest.param(
        lambda ck: load_pretrained(
            {**_timm_state(), "patch_embed.proj.weight": torch.zeros(32, 3, 8)}
        ),
        CheckpointError,
        r"patch_embedding\.patcher\.weight has shape \(32, 3, 8\); expected 4 dimensions",
        id="K22c",
    ),
    pytest.param(
        lambda ck: load_pretrained(_npz_with_rank2_kernel(ck)),
        CheckpointError,
        r"embedding/kernel in the Google \.npz checkpoint has shape .*expected 4 dimensions",
        id="K22e",
    ),
    pytest.param(
        lambda ck: vitlib.position.resample_position_embedding(
            _model().position_embedding, (4, 4), (0, 4), num_prefix_tokens=1
        ),
        ConfigError,
        r"new_grid\[0\] must be an int >= 1, got 0",
        id="K22i",
    ),
]


@pytest.mark.parametrize(("make", "error", "message"), CHECKPOINT_UNCLEAR_ERRORS)
def test_checkpoint_errors_are_clear(
    checkpoint: Path, make: Callable[[Path], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        make(checkpoint)


@pytest.mark.parametrize("name", ["weights.pt", "model.ckpt", "weights.bin"])
def test_a_folder_with_one_weights_file_of_any_supported_suffix_loads(
    checkpoint: Path, name: str
) -> None:
    """K22g: the fallback finds every supported suffix, not only .safetensors/.npz/.pth."""
    loaded = load_pretrained(_folder_with_only(name), num_heads=2).eval()
    torch.testing.assert_close(loaded(_images()), _model()(_images()))


def test_a_folder_with_safetensors_and_bin_prefers_safetensors(checkpoint: Path) -> None:
    """K12m/K22f: a Hugging Face snapshot may carry both; safetensors wins, as in transformers."""
    torch.save(
        vitlib.checkpoints.export_state_dict(_other_model(), "vitlib"),
        checkpoint / "pytorch_model.bin",
    )
    torch.testing.assert_close(load_pretrained(checkpoint).eval()(_images()), _model()(_images()))


# --- nothing the user saved is lost ---------------------------------------------------------


def _other_model() -> ViT:
    model = _model()
    with torch.no_grad():
        model.state_dict()["head.bias"].add_(1.0)
    return model


def _same_outputs(loaded: ViT, model: ViT) -> bool:
    return bool(torch.allclose(loaded.eval()(_images()), model.eval()(_images())))


def _user_files(folder: Path) -> None:
    (folder / "data").mkdir(parents=True)
    (folder / "thesis.tex").write_text("three years of work")
    (folder / "data" / "x.csv").write_text("1,2,3")


def _assert_user_files_kept(folder: Path) -> None:
    assert (folder / "thesis.tex").read_text() == "three years of work"
    assert (folder / "data" / "x.csv").read_text() == "1,2,3"


def _overwrite_keeps_other_files(tmp_path: Path) -> None:
    """K14b: overwrite=True replaces config.json and the weights, nothing else."""
    vitlib.save_pretrained(_model(), tmp_path / "user")
    _user_files(tmp_path / "user")
    vitlib.save_pretrained(_other_model(), tmp_path / "user", overwrite=True)
    _assert_user_files_kept(tmp_path / "user")
    assert _same_outputs(load_pretrained(tmp_path / "user"), _other_model())


def _convert_overwrite_keeps_other_files(tmp_path: Path) -> None:
    """L07g: ``vitlib convert --overwrite`` into a folder of the user's."""
    vitlib.save_pretrained(_other_model(), tmp_path / "src")
    _user_files(tmp_path / "user")
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "user"), "--overwrite"]) == 0
    _assert_user_files_kept(tmp_path / "user")
    assert _same_outputs(load_pretrained(tmp_path / "user"), _other_model())


def _save_into_the_current_folder(tmp_path: Path) -> None:
    """K14h: ``"."`` works and keeps what is there."""
    os.chdir(tmp_path)
    Path("keep.txt").write_text("mine")
    vitlib.save_pretrained(_model(), ".", overwrite=True)
    assert Path("keep.txt").read_text() == "mine"
    assert sorted(os.listdir(".")) == ["config.json", "keep.txt", "model.safetensors"]
    assert _same_outputs(load_pretrained("."), _model())


def _save_through_a_symlink(tmp_path: Path) -> None:
    """K14i: overwriting through a link to a folder writes into the folder it points to."""
    vitlib.save_pretrained(_model(), tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    vitlib.save_pretrained(_other_model(), tmp_path / "link", overwrite=True)
    assert (tmp_path / "link").is_symlink()
    assert _same_outputs(load_pretrained(tmp_path / "real"), _other_model())


def _modes_follow_the_umask(tmp_path: Path) -> None:
    """K14j: 0755 folders and 0644 files under umask 022, for save_pretrained and fit."""
    from torch.utils.data import DataLoader, TensorDataset

    from vitlib.training import fit

    previous = os.umask(0o022)
    try:
        vitlib.save_pretrained(_model(), tmp_path / "ck")
        torch.manual_seed(0)
        data = TensorDataset(torch.randn(8, 3, 32, 32), torch.randint(0, 3, (8,)))
        loader = DataLoader(data, batch_size=4)
        fit(_model(), loader, loader, epochs=1, output_dir=tmp_path / "run", progress=False)
    finally:
        os.umask(previous)
    folders = [tmp_path / "ck", tmp_path / "run" / "last", tmp_path / "run" / "best"]
    for folder in folders:
        assert oct(folder.stat().st_mode & 0o777) == "0o755", folder
        for file in folder.iterdir():
            assert oct(file.stat().st_mode & 0o777) == "0o644", file


NOTHING_LOST = [
    pytest.param(_overwrite_keeps_other_files, id="K14b"),
    pytest.param(_convert_overwrite_keeps_other_files, id="L07g"),
    pytest.param(_save_into_the_current_folder, id="K14h"),
    pytest.param(_save_through_a_symlink, id="K14i"),
    pytest.param(_modes_follow_the_umask, id="K14j"),
]


@pytest.mark.parametrize("scenario", NOTHING_LOST)
def test_nothing_the_user_saved_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scenario: Callable[[Path], None]
) -> None:
    monkeypatch.chdir(tmp_path)
    scenario(tmp_path)


def test_an_unwritable_folder_is_named_not_our_temporaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """K15 (root ignores permission bits, so the refusal is simulated)."""

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(PermissionError, match=r"cannot write into .*/ro/ck"):
        vitlib.save_pretrained(_model(), tmp_path / "ro" / "ck")


_CRASHING_SAVE = """
import os, sys, pathlib, vitlib
sys.path.insert(0, {tests!r})
from test_reliability import _other_model
crash_at, calls = int(sys.argv[1]), [0]
real_replace, real_rmdir = os.replace, pathlib.Path.rmdir
def step():
    calls[0] += 1
    if calls[0] == crash_at:
        os._exit(9)  # like a kill: no clean-up runs
def replace(source, target):
    step()
    real_replace(source, target)
def rmdir(self):
    step()
    real_rmdir(self)
os.replace, pathlib.Path.rmdir = replace, rmdir
vitlib.save_pretrained(_other_model(), "ck", overwrite=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("crash_at", [1, 2, 3, 4], ids=["commit", "move-1", "move-2", "rmdir"])
def test_a_save_killed_at_any_step_leaves_a_whole_checkpoint(tmp_path: Path, crash_at: int) -> None:
    """K16b: the old checkpoint before the commit rename, the new one after it; the next load
    finishes the save and leaves no hidden folder; the user's files stay."""
    vitlib.save_pretrained(_model(), tmp_path / "ck")
    (tmp_path / "ck" / "notes.txt").write_text("mine")
    script = _CRASHING_SAVE.format(tests=str(Path(__file__).parent))
    done = subprocess.run(
        [sys.executable, "-c", script, str(crash_at)], cwd=tmp_path, timeout=120, check=False
    )
    assert done.returncode == 9, "the save must have been cut off"
    expected = _model() if crash_at == 1 else _other_model()
    assert _same_outputs(load_pretrained(tmp_path / "ck"), expected)
    assert sorted(os.listdir(tmp_path / "ck")) == ["config.json", "model.safetensors", "notes.txt"]
    vitlib.save_pretrained(_model(), tmp_path / "ck", overwrite=True)
    assert _same_outputs(load_pretrained(tmp_path / "ck"), _model())


# --- the command line: expected failures print one line and exit 2 ------------------------


def _run_with_truncated_state(tmp_path: Path) -> list[str]:
    """L08f: a run whose last/training_state.pt was cut in half."""
    run = tmp_path / "run"
    args = ["train", "--epochs", "1", "--max-steps", "1", "--layers", "1", "--no-progress"]
    assert main([*args, "--output-dir", str(run)]) == 0
    state = run / "last" / "training_state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    return [*args, "--epochs", "2", "--output-dir", str(run), "--resume"]


def _unwritable(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> list[str]:
    """``argv``, to run where no folder can be created (root ignores permission bits)."""

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    return argv


CLI_FAILURES = [
    pytest.param(
        lambda tmp, mp: ["convert", str(_checkpoint_in(tmp)), str(_file_in(tmp))],
        r"afile is a file; save_pretrained needs a folder path",
        id="L07b",
    ),
    pytest.param(
        lambda tmp, mp: _unwritable(
            mp, ["convert", str(_checkpoint_in(tmp)), str(tmp / "ro" / "out")]
        ),
        r"cannot write into .*ro/out \(Permission denied\)",
        id="L07h",
    ),
    pytest.param(
        lambda tmp, mp: ["convert", str(_checkpoint_in(tmp)), str(tmp / "out"), "--num-heads", "4"],
        r"states num_heads=2, but num_heads=4 was given",
        id="L07j",
    ),
    pytest.param(
        lambda tmp, mp: _run_with_truncated_state(tmp),
        r"run/last/training_state\.pt",
        id="L08f",
        marks=pytest.mark.slow,
    ),
    pytest.param(
        lambda tmp, mp: ["train", "--output-dir", "/dev/null"],
        r"--output-dir /dev/null is a file",
        id="L08p",
    ),
    pytest.param(
        lambda tmp, mp: _unwritable(mp, ["train", "--output-dir", str(tmp / "ro" / "run")]),
        r"Permission denied",
        id="L08q",
    ),
    pytest.param(lambda tmp, mp: ["train", "--position-std", "-1"], r"position.std.*-1", id="L08r"),
    pytest.param(lambda tmp, mp: ["summary", "ViT-B/16", "--depth", "-1"], r"depth", id="L05d"),
    pytest.param(
        lambda tmp, mp: ["train", "--seed", "-1"],
        r"argument --seed: must be an int >= 0 and <= 4294967295, got -1",
        id="seed",
    ),
]


def _checkpoint_in(folder: Path) -> Path:
    vitlib.save_pretrained(_model(), folder / "ck", overwrite=True)
    return folder / "ck"


def _file_in(folder: Path) -> Path:
    (folder / "afile").write_text("not a folder")
    return folder / "afile"


@pytest.mark.parametrize(("arguments", "message"), CLI_FAILURES)
def test_cli_failures_print_one_line_and_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    arguments: Callable[[Path, pytest.MonkeyPatch], list[str]],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = arguments(tmp_path, monkeypatch)
    capsys.readouterr()
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert re.search(message, lines[0]), lines[0]
    assert "[Errno" not in lines[0]


def test_a_bug_in_the_cli_still_shows_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only expected failures are turned into one line; a TypeError from inside is a bug."""

    def broken(*args: object, **kwargs: object) -> None:
        raise TypeError("unsupported operand")

    monkeypatch.setattr("vitlib.analysis.summary.summary", broken)
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["summary", "ViT-B/16"])


# --- nothing hangs: each case runs in its own process with a time limit --------------------

_ISOLATED = """
import resource, sys, time, warnings
resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, 8 * 2**30))  # a regression fails, not swaps
import torch, vitlib
T = dict(img_size=32, patch_size=8, num_transformer_layers=2, embedding_dim=32, mlp_size=64,
         num_heads=2, num_classes=3)
start = time.monotonic()
try:
{body}
    print("RESULT ok")
except Exception as error:
    print(f"RESULT {{type(error).__name__}}: {{error}}")
print(f"SECONDS {{time.monotonic() - start:.1f}}")
"""
_TIME_LIMIT = 90.0


def _isolated(body: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[str, float]:
    """Run ``body`` (statements) in a fresh interpreter; return its RESULT line and seconds."""
    code = _ISOLATED.format(body=textwrap.indent(textwrap.dedent(body).strip(), "    "))
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=_TIME_LIMIT,
        check=False,
    )
    lines = done.stdout.splitlines()
    results = [line.removeprefix("RESULT ") for line in lines if line.startswith("RESULT ")]
    assert results, f"no result (exit {done.returncode}): {done.stderr[-2000:]}"
    seconds = float(next(line.split()[1] for line in lines if line.startswith("SECONDS ")))
    return results[0], seconds


@pytest.fixture
def stalled_server() -> Iterator[str]:
    """An http://127.0.0.1 address whose server accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)  # the kernel completes the handshakes; nobody ever reads or writes
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def _fifo_weights(folder: Path, server: str) -> tuple[str, dict[str, str]]:
    vitlib.save_pretrained(_model(), folder / "f")
    (folder / "f" / "model.safetensors").unlink()
    os.mkfifo(folder / "f" / "model.safetensors")
    return 'vitlib.load_pretrained("f")', {}


def _fifo_config(folder: Path, server: str) -> tuple[str, dict[str, str]]:
    vitlib.save_pretrained(_model(), folder / "f")
    (folder / "f" / "config.json").unlink()
    os.mkfifo(folder / "f" / "config.json")
    return 'vitlib.load_pretrained("f")', {}


def _zero_config(folder: Path, server: str) -> tuple[str, dict[str, str]]:
    vitlib.save_pretrained(_model(), folder / "z")
    (folder / "z" / "config.json").unlink()
    (folder / "z" / "config.json").symlink_to("/dev/zero")
    return 'vitlib.load_pretrained("z")', {}


def _stalled_url(folder: Path, server: str) -> tuple[str, dict[str, str]]:
    return (
        f'vitlib.load_pretrained("{server}/model.pth", num_heads=2)',
        {"VITLIB_DOWNLOAD_TIMEOUT": "1", "TORCH_HOME": str(folder / "torch")},
    )


def _stalled_hub(folder: Path, server: str) -> tuple[str, dict[str, str]]:
    return 'vitlib.load_pretrained("hf-hub:google/vit-base-patch16-224")', {
        "HF_ENDPOINT": server,
        "HF_HOME": str(folder / "hf"),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_ETAG_TIMEOUT": "1",
        "HF_HUB_DOWNLOAD_TIMEOUT": "1",
    }


def _decompression_bomb(folder: Path, server: str) -> tuple[str, dict[str, str]]:
    from PIL import Image

    (folder / "d" / "cat").mkdir(parents=True)
    Image.new("1", (12000, 12000)).save(folder / "d" / "cat" / "bomb.png")
    Image.new("RGB", (40, 40)).save(folder / "d" / "cat" / "fine.png")
    return (
        "warnings.simplefilter('error')\n"
        "from vitlib.data import ImageFolderDataset, Preprocessing\n"
        "dataset = ImageFolderDataset('d', Preprocessing((32, 32)).transform())\n"
        "dataset.load_image(0)",
        {},
    )


def _slow_hint(folder: Path, server: str) -> tuple[str, dict[str, str]]:
    return "vitlib.ViTConfig(embedding_dim=11 * 13 * 10**16, num_heads=12)", {}


def _absurd_depth(folder: Path, server: str) -> tuple[str, dict[str, str]]:
    return 'vitlib.ViT(**{**T, "num_transformer_layers": 10**7})', {}


HANGS = [
    pytest.param(_fifo_weights, r"CheckpointError: .*model\.safetensors is a FIFO", id="K13h"),
    pytest.param(_fifo_config, r"CheckpointError: .*config\.json is a FIFO", id="K13h-config"),
    pytest.param(_zero_config, r"CheckpointError: .*config\.json is a device", id="K13i"),
    pytest.param(_stalled_url, r"CheckpointError: .*model\.pth.*timed out", id="K12j"),
    pytest.param(_stalled_hub, r"CheckpointError: .*google/vit-base-patch16-224", id="K12k"),
    pytest.param(
        _decompression_bomb, r"SkippedImagesWarning: .*bomb\.png \(decompression", id="D09b"
    ),
    pytest.param(_slow_hint, r"ConfigError: .*\(e\.g\. 10, 11, 13\)", id="A2"),
    pytest.param(_absurd_depth, r"ConfigError: .*num_transformer_layers=10000000", id="A3"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("case", "expected"), HANGS)
def test_nothing_hangs(
    tmp_path: Path,
    stalled_server: str,
    case: Callable[[Path, str], tuple[str, dict[str, str]]],
    expected: str,
) -> None:
    """Each case fails fast with a clear error, where it used to block, read forever or build
    for minutes; the process's time limit turns a regression into a failure, not a hang."""
    body, env = case(tmp_path, stalled_server)
    result, seconds = _isolated(body, tmp_path, env)
    assert re.search(expected, result), result
    assert seconds < 30, f"took {seconds} s: {result}"
