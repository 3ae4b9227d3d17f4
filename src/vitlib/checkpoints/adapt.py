"""Adapting a checkpoint's weights to the model built from it, and loading them strictly."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from vitlib.checkpoints import keys as slots
from vitlib.config import ViTConfig
from vitlib.errors import CheckpointError
from vitlib.position import resample_position_embedding
from vitlib.vit import ViT

__all__ = ["AdaptedCheckpointWarning", "adapt_input_channels", "adapt_state", "load_strict"]


class AdaptedCheckpointWarning(UserWarning):
    """Loading changed part of a checkpoint: a head re-initialised or a layer dropped."""


def adapt_state(
    state: dict[str, Tensor], source: ViTConfig, target: ViTConfig
) -> dict[str, Tensor]:
    """Adapt ``state``, the weights of a model with config ``source``, to config ``target``.

    The position embeddings are resampled to the new grid, the patch kernel adapted to the new
    channels ([`adapt_input_channels`][vitlib.checkpoints.adapt_input_channels]), and the
    pre-logits layer and the head dropped where they change, with an
    [`AdaptedCheckpointWarning`][vitlib.checkpoints.AdaptedCheckpointWarning] naming them.

    Returns:
        ``state``, changed in place.
    """
    if source.grid_size != target.grid_size:
        state[slots.POSITION.key()] = resample_position_embedding(
            state[slots.POSITION.key()],
            source.grid_size,
            target.grid_size,
            num_prefix_tokens=int(source.class_token),
        )
    if source.in_channels != target.in_channels:
        patcher = slots.PATCH.key("weight")
        state[patcher] = adapt_input_channels(state[patcher], target.in_channels)
    dropped: list[str] = []
    if source.representation_size != target.representation_size:
        dropped += [key for key in state if slots.PRE_LOGITS.owns(key)]
    head_reset = source.num_features != target.num_features or (
        source.num_classes != target.num_classes
    )
    if head_reset:
        dropped += [key for key in state if slots.HEAD.owns(key)]
    for key in dropped:
        del state[key]
    if dropped:
        reason = []
        if source.representation_size != target.representation_size:
            reason.append(f"pre-logits layer ({source.representation_size}) dropped")
        if head_reset and target.num_classes:
            reason.append(
                f"head re-initialised for {target.num_classes} classes "
                f"(checkpoint: {source.num_classes})"
            )
        if reason:
            warnings.warn(
                "; ".join(reason) + ": train it before use.", AdaptedCheckpointWarning, stacklevel=3
            )
    return state


def adapt_input_channels(weight: Tensor, channels: int) -> Tensor:
    """Adapt a patch kernel ``(D, C, P_h, P_w)`` to ``channels`` input channels.

    One channel: the sum over the old channels (a gray image gives what its RGB copy gave).
    Otherwise: the old channels repeated cyclically, scaled by ``old / new`` channels (exact for
    a multiple of the old count on inputs whose channels repeat the same way).
    """
    old = weight.shape[1]
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-channels // old)
    return weight.repeat(1, repeats, 1, 1)[:, :channels] * (old / channels)


def load_strict(model: ViT, state: dict[str, Tensor], family: str) -> None:
    """Load ``state`` into ``model``: every key and shape must be the model's, except a head
    and pre-logits layer that were dropped to be re-initialised.

    Raises:
        CheckpointError: Keys are missing or unexpected, or shapes differ; the message lists
            them (for a checkpoint of ``family``).
    """
    expected = model.state_dict()
    reinitialised = {
        key
        for key in expected
        if (slots.HEAD.owns(key) or slots.PRE_LOGITS.owns(key)) and key not in state
    }
    missing = sorted(set(expected) - set(state) - reinitialised)
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"the {family} checkpoint does not fit the inferred model {model.config.name or ''}: "
            f"missing keys {missing[:10]}{' ...' if len(missing) > 10 else ''}, unexpected keys "
            f"{unexpected[:10]}{' ...' if len(unexpected) > 10 else ''}."
        )
    mismatched = [
        f"{key}: checkpoint {tuple(tensor.shape)}, model {tuple(expected[key].shape)}"
        for key, tensor in state.items()
        if tensor.shape != expected[key].shape
    ]
    if mismatched:
        raise CheckpointError(
            f"shape mismatch for {len(mismatched)} tensor(s) of the {family} checkpoint: "
            f"{'; '.join(mismatched[:6])}{' ...' if len(mismatched) > 6 else ''}. The model's "
            f"sizes were read from the checkpoint itself (embedding_dim from the patch kernel, "
            f"mlp_size from layer 0's fc1), so one odd tensor there shows as mismatches "
            f"elsewhere; the checkpoint is damaged or mixes two models."
        )
    with torch.no_grad():
        model.load_state_dict(state, strict=False)
