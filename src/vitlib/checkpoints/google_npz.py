"""Google's original ViT checkpoints (big_vision / vit_jax ``.npz``) -> vitlib.

Flax stores dense kernels as ``(in, out)`` (PyTorch: ``(out, in)``), attention kernels per head as
``(D, heads, head_dim)`` and ``(heads, head_dim, D)``, and the patch kernel as
``(P_h, P_w, C, D)``; each is transposed or reshaped here. The number of heads is read from the
attention kernels, so it never needs to be given.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from einops import rearrange
from torch import Tensor

from ..errors import CheckpointError
from ._mapping import Converted, count_layers, require

__all__ = ["matches", "to_vitlib"]

NAME = "google-npz"
_BLOCK = "Transformer/encoderblock_{i}"
_ATTENTION = _BLOCK + "/MultiHeadDotProductAttention_1"


def matches(keys: set[str]) -> bool:
    """Whether ``keys`` look like a Google ViT ``.npz`` checkpoint."""
    return "embedding/kernel" in keys and any(key.startswith("Transformer/") for key in keys)


def to_vitlib(arrays: Mapping[str, Tensor]) -> Converted:
    """Convert Google's ``.npz`` arrays (as tensors) to vitlib's layout."""
    remaining = dict(arrays)

    def take(key: str, rank: int | None = None) -> Tensor:
        tensor = require(remaining, key, NAME)
        del remaining[key]
        if rank is not None and tensor.ndim != rank:
            raise CheckpointError(
                f"{key} in the Google .npz checkpoint has shape {tuple(tensor.shape)}; expected "
                f"{rank} dimensions. The file is damaged or not a standard ViT."
            )
        return tensor

    def dense(prefix: str) -> dict[str, Tensor]:
        kernel = take(f"{prefix}/kernel", rank=2)
        return {"weight": kernel.T.contiguous(), "bias": take(f"{prefix}/bias")}

    depth = count_layers(remaining, r"Transformer/encoderblock_(\d+)/")
    state: dict[str, Tensor] = {
        "patch_embedding.patcher.weight": rearrange(
            take("embedding/kernel", 4), "h w c d -> d c h w"
        ),
        "patch_embedding.patcher.bias": take("embedding/bias"),
        "position_embedding": take("Transformer/posembed_input/pos_embedding"),
        "norm.weight": take("Transformer/encoder_norm/scale"),
        "norm.bias": take("Transformer/encoder_norm/bias"),
    }
    if "cls" in remaining:
        state["class_embedding"] = take("cls")
    num_heads = None
    for index in range(depth):
        block, attention = _BLOCK.format(i=index), _ATTENTION.format(i=index)
        target = f"transformer_encoder.{index}"
        kernels = [take(f"{attention}/{part}/kernel", 3) for part in ("query", "key", "value")]
        num_heads = kernels[0].shape[1]
        state[f"{target}.msa_block.qkv.weight"] = torch.cat(
            [rearrange(kernel, "d h k -> (h k) d") for kernel in kernels]
        )
        state[f"{target}.msa_block.qkv.bias"] = torch.cat(
            [take(f"{attention}/{part}/bias").reshape(-1) for part in ("query", "key", "value")]
        )
        state[f"{target}.msa_block.out_proj.weight"] = rearrange(
            take(f"{attention}/out/kernel", 3), "h k d -> d (h k)"
        )
        state[f"{target}.msa_block.out_proj.bias"] = take(f"{attention}/out/bias")
        for norm, name in (("LayerNorm_0", "msa_block"), ("LayerNorm_2", "mlp_block")):
            state[f"{target}.{name}.layer_norm.weight"] = take(f"{block}/{norm}/scale")
            state[f"{target}.{name}.layer_norm.bias"] = take(f"{block}/{norm}/bias")
        for dense_name, name in (("Dense_0", "fc1"), ("Dense_1", "fc2")):
            for kind, tensor in dense(f"{block}/MlpBlock_3/{dense_name}").items():
                state[f"{target}.mlp_block.{name}.{kind}"] = tensor
    for prefix, target in (("pre_logits", "pre_logits.fc"), ("head", "head")):
        if f"{prefix}/kernel" in remaining:
            for kind, tensor in dense(prefix).items():
                state[f"{target}.{kind}"] = tensor
    if remaining:
        raise CheckpointError(
            f"unexpected arrays in the Google .npz checkpoint: {sorted(remaining)[:10]}; "
            f"this model variant is not supported (vitlib maps the standard ViT only)."
        )
    hints: dict[str, object] = {"layer_norm_eps": 1e-6}
    if num_heads is not None:
        hints["num_heads"] = num_heads
    return Converted(NAME, state, hints)
