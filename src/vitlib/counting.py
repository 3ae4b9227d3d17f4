"""Exact, analytic parameter and FLOP counts, straight from the config (no model is built).

FLOPs count a multiply-add as 2 and include every matrix product of the forward pass, leaving
out element-wise work as fvcore and torchvision do; torchvision's "GFLOPS" column counts
multiply-adds, half of [`count_flops`][vitlib.count_flops]. docs/presets.md says more.
"""

from __future__ import annotations

from vitlib._checks import check_bool, check_type
from vitlib.config import ViTConfig

__all__ = ["count_flops", "count_parameters", "parameter_breakdown"]


def _as_config(config: ViTConfig | str) -> ViTConfig:
    if isinstance(config, str):
        return ViTConfig.from_preset(config)
    check_type(
        "config", config, ViTConfig, "a vitlib.ViTConfig or a preset name such as 'ViT-B/16'"
    )
    return config


def count_parameters(config: ViTConfig | str) -> int:
    """Number of parameters of ``ViT.from_config(config)``, in closed form.

    Equals ``sum(p.numel() for p in model.parameters())`` for every valid config (tested).

    Examples:
        >>> count_parameters(ViTConfig.from_preset("ViT-B/16"))
        86567656
    """
    return sum(parameter_breakdown(config).values())


def parameter_breakdown(config: ViTConfig | str) -> dict[str, int]:
    """Parameters per part of the model, each part named with the config fields that size it.

    The values add up to ``count_parameters``; errors about absurd sizes name the largest.
    """
    cfg = _as_config(config)
    dim, mlp = cfg.embedding_dim, cfg.mlp_size
    patch_h, patch_w = cfg.patch_hw
    attention = 2 * dim + 3 * dim * dim + (3 * dim if cfg.qkv_bias else 0) + dim * dim + dim
    mlp_block = 2 * dim + dim * mlp + mlp + mlp * dim + dim
    layer_scale = 2 * dim if cfg.layer_scale_init is not None else 0
    layer = attention + mlp_block + layer_scale
    representation = cfg.representation_size
    return {
        f"the patch embedding (in_channels={cfg.in_channels}, patch_size={cfg.patch_size}, "
        f"embedding_dim={dim})": cfg.in_channels * patch_h * patch_w * dim + dim,
        f"the class and register tokens (num_register_tokens={cfg.num_register_tokens})": (
            cfg.num_prefix_tokens * dim
        ),
        f"the position embedding (img_size={cfg.img_size} / patch_size={cfg.patch_size} gives "
        f"{cfg.num_patches:,} positions of embedding_dim={dim})": (
            (int(cfg.class_token) + cfg.num_patches) * dim
        ),
        f"the encoder (num_transformer_layers={cfg.num_transformer_layers} layers of "
        f"{layer:,} with embedding_dim={dim}, mlp_size={mlp})": cfg.num_transformer_layers * layer,
        "the final norm": 2 * dim,
        f"the pre-logits layer (representation_size={representation})": (
            dim * representation + representation if representation else 0
        ),
        f"the head (num_classes={cfg.num_classes})": (
            cfg.num_features * cfg.num_classes + cfg.num_classes
        ),
    }


def count_flops(config: ViTConfig | str, *, class_token_shortcut: bool = False) -> int:
    """Forward FLOPs for one image at ``config.img_size`` (a multiply-add counted as 2).

    By default the whole network, every token through every block: the figure papers and
    torchvision publish, and what [`ViT.forward`][vitlib.ViT.forward] runs.
    With ``class_token_shortcut=True``, what the copy of
    [`optimize_for_inference`][vitlib.optimize_for_inference] runs: under class-token pooling
    its last block computes only the class token's output (the ``qkv`` projection still covers
    every token, as keys and values); with mean pooling the two agree.

    Examples:
        >>> count_flops(ViTConfig.from_preset("ViT-B/16")) / 1e9  # 2 x torchvision's 17.564
        35.127656448
        >>> count_flops("ViT-B/16", class_token_shortcut=True) / 1e9
        32.928141312
    """
    cfg = _as_config(config)
    check_bool("class_token_shortcut", class_token_shortcut)
    dim, mlp = cfg.embedding_dim, cfg.mlp_size
    patch_h, patch_w = cfg.patch_hw
    tokens = cfg.num_prefix_tokens + cfg.num_patches
    patch_embedding = cfg.num_patches * (cfg.in_channels * patch_h * patch_w) * dim

    def block(queries: int) -> int:
        qkv = tokens * dim * 3 * dim  # keys and values need every token
        scores_and_mix = 2 * queries * tokens * dim  # QK^T and AV over all heads together
        out_projection = queries * dim * dim
        mlp_layers = 2 * queries * dim * mlp
        return qkv + scores_and_mix + out_projection + mlp_layers

    depth = cfg.num_transformer_layers
    last_queries = 1 if class_token_shortcut and cfg.pool == "token" else tokens
    encoder = (depth - 1) * block(tokens) + block(last_queries)
    pre_logits = dim * cfg.representation_size if cfg.representation_size else 0
    head = cfg.num_features * cfg.num_classes
    return 2 * (patch_embedding + encoder + pre_logits + head)
