"""Google's original ViT checkpoints (big_vision / vit_jax ``.npz``) -> vitlib.

Flax stores dense kernels as ``(in, out)`` (PyTorch: ``(out, in)``), attention kernels per head as
``(D, heads, head_dim)`` and ``(heads, head_dim, D)``, and the patch kernel as
``(P_h, P_w, C, D)``; each is transposed or reshaped here. The number of heads is read from the
attention kernels, so it never needs to be given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import torch
from einops import rearrange
from torch import Tensor

from vitlib.checkpoints import keys as slots
from vitlib.checkpoints.family import Converted, Family, count_layers, require
from vitlib.errors import CheckpointError

__all__ = ["FAMILY", "matches", "to_vitlib"]

NAME = "google-npz"
_BLOCK = "Transformer/encoderblock_{i}"
_ATTENTION = _BLOCK + "/MultiHeadDotProductAttention_1"
_QKV = ("query", "key", "value")


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

    depth = count_layers(remaining, r"Transformer/encoderblock_(\d+)/")
    state: dict[str, Tensor] = {
        slots.PATCH.key("weight"): rearrange(take("embedding/kernel", 4), "h w c d -> d c h w"),
        slots.PATCH.key("bias"): take("embedding/bias"),
        slots.POSITION.key(): take("Transformer/posembed_input/pos_embedding"),
        slots.NORM.key("weight"): take("Transformer/encoder_norm/scale"),
        slots.NORM.key("bias"): take("Transformer/encoder_norm/bias"),
    }
    if "cls" in remaining:
        state[slots.CLASS_TOKEN.key()] = take("cls")

    def dense(prefix: str, slot: slots.Slot, layer: int = 0) -> None:
        state[slot.key("weight", layer=layer)] = take(f"{prefix}/kernel", rank=2).T.contiguous()
        state[slot.key("bias", layer=layer)] = take(f"{prefix}/bias")

    num_heads = None
    for index in range(depth):
        block, attention = _BLOCK.format(i=index), _ATTENTION.format(i=index)
        kernels = [take(f"{attention}/{part}/kernel", 3) for part in _QKV]
        num_heads = kernels[0].shape[1]
        state[slots.QKV.key("weight", layer=index)] = torch.cat(
            [rearrange(kernel, "d h k -> (h k) d") for kernel in kernels]
        )
        state[slots.QKV.key("bias", layer=index)] = torch.cat(
            [take(f"{attention}/{part}/bias").reshape(-1) for part in _QKV]
        )
        state[slots.OUT_PROJ.key("weight", layer=index)] = rearrange(
            take(f"{attention}/out/kernel", 3), "h k d -> d (h k)"
        )
        state[slots.OUT_PROJ.key("bias", layer=index)] = take(f"{attention}/out/bias")
        for norm, slot in (("LayerNorm_0", slots.MSA_NORM), ("LayerNorm_2", slots.MLP_NORM)):
            state[slot.key("weight", layer=index)] = take(f"{block}/{norm}/scale")
            state[slot.key("bias", layer=index)] = take(f"{block}/{norm}/bias")
        for name, slot in (("Dense_0", slots.FC1), ("Dense_1", slots.FC2)):
            dense(f"{block}/MlpBlock_3/{name}", slot, index)
    for prefix, slot in (("pre_logits", slots.PRE_LOGITS), ("head", slots.HEAD)):
        if f"{prefix}/kernel" in remaining:
            dense(prefix, slot)
    if remaining:
        raise CheckpointError(
            f"unexpected arrays in the Google .npz checkpoint: {sorted(remaining)[:10]}; "
            f"this model variant is not supported (vitlib maps the standard ViT only)."
        )
    hints: dict[str, object] = {"layer_norm_eps": 1e-6}
    if num_heads is not None:
        hints["num_heads"] = num_heads
    return Converted(NAME, state, hints)


FAMILY: Final = Family(NAME, "Google's .npz", matches, to_vitlib)
