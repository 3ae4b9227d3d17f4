"""Hostile input, one parametrised test per class of failure (see docs/reliability.md).

The case ids are those of the reliability probe (shared/reports/reliability-probe-2026-11-27.md)
where a case comes from it. Each class states a guarantee:

- silent wrong answers: input that used to be accepted and gave a wrong model or result is refused;
- clear errors: input that used to end in a raw error from torch, numpy or the standard library
  gets a vitlib error (or the conventional built-in) naming what was given and the fix;
- nothing lost: saving over a folder replaces only what vitlib wrote, and no crash loses a model;
- nothing hangs: each case runs in a subprocess with a time limit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import vitlib
from vitlib import (
    ConfigError,
    InputShapeError,
    InputTypeError,
    InsufficientMemoryError,
    MLPBlock,
    MultiheadSelfAttentionBlock,
    PatchEmbedding,
    TransformerEncoderBlock,
    ViT,
    ViTConfig,
)
from vitlib import _validation as validation
from vitlib.blocks import LayerScale

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


def _bad(**fields: Any) -> dict[str, Any]:
    """Keyword arguments of deliberately wrong types, hidden from the type checker."""
    return fields


def _model() -> ViT:
    torch.manual_seed(0)
    return ViT(**T).eval()


def _images(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32).to(dtype)


# Input that was accepted and silently gave a wrong model or wrong outputs.
SILENT_WRONG_ANSWERS = [
    pytest.param(
        lambda: ViT(**T, layer_norm_eps=math.inf), ConfigError, "layer_norm_eps", id="C11c"
    ),
    pytest.param(lambda: ViTConfig(layer_norm_eps=1e308), ConfigError, "at most 0.1", id="K09k"),
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
        "in_channels must be >= 1, got 0",
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
    pytest.param(lambda: LayerScale(8, 0.0), ConfigError, "layer_scale_init", id="block-scale-0"),
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
        r"layer_scale_init must be None \(off\) or a float .*got 'abc'",
        id="C11e",
    ),
    pytest.param(
        lambda: ViT(**T, **_bad(class_token="no", pool="mean")),
        TypeError,
        "class_token must be a bool",
        id="C13b2",
    ),
    pytest.param(lambda: MLPBlock(8, -1), ConfigError, "mlp_size must be >= 1, got -1", id="C25d"),
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
        lambda: MultiheadSelfAttentionBlock(8, 2)(torch.randn(1, 3, 8).double()),
        InputTypeError,
        "tokens have dtype float64",
        id="block-dtype",
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
    pytest.param(
        lambda: MLPBlock(10**6, 10**9),
        ConfigError,
        r"MLPBlock\(1000000, 1000000000\) has .* two dense layers",
        id="block-huge",
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


def test_out_of_memory_names_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """F14: the allocator's error gets the batch size and how to split it, and stays a
    RuntimeError carrying torch's own message."""
    model = _model()

    def fail(tokens: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried 979200000 bytes")

    monkeypatch.setattr(model, "forward_features", fail)
    with pytest.raises(
        InsufficientMemoryError, match=r"batch of 2 images .* images\.split"
    ) as info:
        model(_images())
    assert isinstance(info.value, RuntimeError)
    assert "DefaultCPUAllocator" in str(info.value)


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
