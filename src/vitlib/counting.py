"""Exact parameter and FLOP counts: in closed form from a config (no model is built), or of a
built module (its parameters, and the FLOPs PyTorch's counter sees in one forward pass).

FLOPs count a multiply-add as 2 and include every matrix product of the forward pass, leaving
out element-wise work as fvcore and torchvision do; torchvision's "GFLOPS" column counts
multiply-adds, half of [`count_flops`][vitlib.count_flops]. docs/presets.md says more.
"""

from __future__ import annotations

import torch
from torch import nn

from vitlib._checks import check_bool, check_positive_int, check_sequence, check_type
from vitlib._runtime import eval_mode
from vitlib.config import ViTConfig
from vitlib.errors import ConfigError

__all__ = ["count_flops", "count_parameters", "parameter_breakdown"]


def _as_config(config: ViTConfig | str) -> ViTConfig:
    if isinstance(config, str):
        return ViTConfig.from_preset(config)
    check_type(
        "config", config, ViTConfig, "a vitlib.ViTConfig or a preset name such as 'ViT-B/16'"
    )
    return config


def count_parameters(config: ViTConfig | str | nn.Module) -> int:
    """Number of parameters of ``ViT.from_config(config)``, in closed form; or of a built module
    (a custom model assembled from the blocks, say), each shared parameter once.

    The closed form equals ``sum(p.numel() for p in model.parameters())`` for every valid
    config (tested).

    Examples:
        >>> count_parameters(ViTConfig.from_preset("ViT-B/16"))
        86567656
        >>> count_parameters(vitlib.MLPBlock(embedding_dim=8, mlp_size=32))
        568
    """
    if isinstance(config, nn.Module):
        return sum(parameter.numel() for parameter in config.parameters())
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


def count_flops(
    config: ViTConfig | str | nn.Module,
    *,
    class_token_shortcut: bool = False,
    input_size: tuple[int, ...] | None = None,
) -> int:
    """Forward FLOPs for one image (a multiply-add counted as 2): in closed form for a config at
    its ``img_size``, or measured on a built module.

    For a config: by default the whole network, every token through every block, the figure
    papers and torchvision publish and what [`ViT.forward`][vitlib.ViT.forward] runs; with
    ``class_token_shortcut=True``, what the copy of
    [`optimize_for_inference`][vitlib.optimize_for_inference] runs (under class-token pooling
    its last block computes only the class token's output; with mean pooling the two agree).

    For a module (a custom model assembled from the blocks, or a ViT as it is, head swaps and
    all): PyTorch's ``torch.utils.flop_counter`` counts one forward pass of a zero image in
    eval mode and without gradients, attention through its math kernel (whose products the
    counter knows); the module's mode is restored. For a [`ViT`][vitlib.ViT] this equals the
    closed form of its config (tested).

    Args:
        config: A config, a preset name, or a built ``nn.Module``.
        class_token_shortcut: With a config: count what ``optimize_for_inference``'s copy runs.
            A module is measured as it runs (so pass that copy itself).
        input_size: With a module: the shape of one input, without the batch dimension
            (``(channels, height, width)`` of an image, ``(tokens, width)`` for a block);
            default the image size of a module that has a ``ViTConfig`` as ``.config``.

    Raises:
        InputTypeError: ``config`` is none of the kinds above, or ``input_size`` is not a
            sequence of ints.
        ConfigError: ``input_size`` is missing for a module without a ``ViTConfig``, given with
            a config, or ``class_token_shortcut`` is given with a module.

    Examples:
        >>> count_flops(ViTConfig.from_preset("ViT-B/16")) / 1e9  # 2 x torchvision's 17.564
        35.127656448
        >>> count_flops("ViT-B/16", class_token_shortcut=True) / 1e9
        32.928141312
        >>> count_flops(vitlib.MLPBlock(embedding_dim=8, mlp_size=32), input_size=(4, 8))
        4096
    """
    check_bool("class_token_shortcut", class_token_shortcut)
    if isinstance(config, nn.Module):
        if class_token_shortcut:
            raise ConfigError(
                "class_token_shortcut=True counts a config's shortcut; a module is measured as "
                "it runs, so pass the copy vitlib.optimize_for_inference(model) returns instead."
            )
        return _measured_flops(config, input_size)
    if input_size is not None:
        raise ConfigError(
            f"input_size={input_size!r} is for a module; a config counts at its img_size and "
            "in_channels (use config.replace(img_size=..., in_channels=...) instead)."
        )
    cfg = _as_config(config)
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


def _measured_flops(module: nn.Module, input_size: tuple[int, ...] | None) -> int:
    """The FLOPs PyTorch's counter sees in ``module``'s forward pass on one zero input."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    if input_size is None:
        config = getattr(module, "config", None)
        if not isinstance(config, ViTConfig):
            raise ConfigError(
                f"count_flops needs input_size, the shape of one input, for a "
                f"{type(module).__name__}, which has no vitlib.ViTConfig to take it from; "
                "e.g. input_size=(3, 224, 224) for images."
            )
        input_size = (config.in_channels, *config.image_hw)
    sides = check_sequence("input_size", input_size, "the shape of one input, e.g. (3, 224, 224)")
    if not sides:
        raise ConfigError("input_size must name at least one dimension, got ().")
    shape = [check_positive_int("each side of input_size", side) for side in sides]
    parameter = next(module.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else None
    images = torch.zeros(1, *shape, device=device, dtype=dtype)
    counter = FlopCounterMode(display=False)
    with eval_mode(module), torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        module(images)
    return int(counter.get_total_flops())
