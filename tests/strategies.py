"""Hypothesis strategies for small, valid ViT configurations."""

from __future__ import annotations

from hypothesis import strategies as st

from vitlib import ViTConfig


@st.composite
def small_configs(draw: st.DrawFn, *, max_dim_per_head: int = 8) -> ViTConfig:
    """A valid, small ``ViTConfig`` with random, often non-square, geometry and options.

    Every field is drawn (but the name), the dropout and drop-path rates included: a test that
    needs a deterministic forward pass puts the model in eval mode or zeroes the rates.
    """
    rates = st.sampled_from([0.0, 0.1, 0.5])
    patch_h = draw(st.integers(1, 4))
    patch_w = draw(st.sampled_from([patch_h, draw(st.integers(1, 4))]))
    rows, cols = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    num_heads = draw(st.integers(1, 3))
    class_token = draw(st.booleans())
    return ViTConfig(
        img_size=(rows * patch_h, cols * patch_w),
        in_channels=draw(st.integers(1, 4)),
        patch_size=(patch_h, patch_w),
        num_transformer_layers=draw(st.integers(1, 3)),
        embedding_dim=num_heads * draw(st.integers(2, max_dim_per_head)),  # LN of 1 dim is constant
        mlp_size=draw(st.integers(1, 24)),
        num_heads=num_heads,
        attn_dropout=draw(rates),
        mlp_dropout=draw(rates),
        embedding_dropout=draw(rates),
        num_classes=draw(st.integers(0, 7)),
        qkv_bias=draw(st.booleans()),
        layer_norm_eps=draw(st.sampled_from([1e-6, 1e-5, 1e-12])),
        pool="token" if class_token and draw(st.booleans()) else "mean",
        class_token=class_token,
        representation_size=draw(st.none() | st.integers(1, 9)),
        layer_scale_init=draw(st.none() | st.just(0.1)),
        num_register_tokens=draw(st.integers(0, 2)),
        drop_path_rate=draw(rates),
        dynamic_img_size=draw(st.booleans()),
    )
