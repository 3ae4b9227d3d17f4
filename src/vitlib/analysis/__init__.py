"""What a ViT learned and how it is built. Here, as tensors, the analyses of the paper's
Figures 6 and 7 (docs/analysis.md lists them); beside them their pictures
(`vitlib.analysis.figures`), the training and evaluation plots (`vitlib.analysis.plots`), the
per-layer summary (`vitlib.analysis.summary`) and the generated tables (`vitlib.analysis.reports`).

The functions that run the model do so in eval mode (its mode restored afterwards), without
gradients and one layer at a time, through each attention block's ``need_weights`` path; they
check the images as ``forward`` does, refuse an empty batch (B = 0), and stop at attention
weights that are NaN or infinite (from NaN images or weights) instead of returning NaN.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, Literal

import torch
from einops import rearrange, reduce
from torch import Tensor, nn
from torch.nn import functional as F

from vitlib._checks import check_choice, check_int, check_number, check_type
from vitlib._runtime import eval_mode
from vitlib.blocks import MultiheadSelfAttentionBlock
from vitlib.errors import ConfigError, DataError, InputShapeError, InputTypeError
from vitlib.vit import ViT, select_blocks

__all__ = [
    "HeadFusion",
    "attention_maps",
    "attention_rollout",
    "embedding_filters",
    "mean_attention_distance",
    "position_embedding_similarity",
    "rollout_map",
]

HeadFusion = Literal["mean", "max", "min"]
"""How [`attention_rollout`][vitlib.analysis.attention_rollout] merges the heads of a layer."""
_HEAD_FUSIONS: Final[tuple[HeadFusion, ...]] = ("mean", "max", "min")


def attention_maps(model: ViT, images: Tensor, layers: int | Sequence[int] | None = None) -> Tensor:
    """The attention weights of every head in the chosen layers (eq. 2's softmax).

    Args:
        model: A [`ViT`][vitlib.ViT].
        images: ``(B, C, H, W)``, as for ``model(images)``.
        layers: Which encoder layers, as ``indices`` of
            [`forward_intermediates`][vitlib.ViT.forward_intermediates]: ``None`` for all, an int
            ``n`` for the last ``n``, or a sequence of indices. No layer after the last one asked
            for is run.

    Returns:
        ``(layers, B, heads, T, T)``, ``T = prefix + N`` tokens in the order of
        ``forward_features`` (class token, registers, patches row by row); entry
        ``[l, b, h, i, j]`` is how much token ``i`` attends to token ``j`` in head ``h`` of
        layer ``l``; each row sums to 1. All of them are kept: for a bounded memory, ask for a
        few layers at a time.

    Raises:
        TypeError: ``model`` is not a ``ViT``; ``layers`` is not None, an int or ints.
        ValueError: A layer index is out of range.
        InputShapeError: ``images`` does not fit the model, or is an empty batch (B = 0).
        DataError: The attention weights are NaN or infinite (NaN images or weights).
    """
    _check_model(model, "attention_maps")
    take = select_blocks(model.config.num_transformer_layers, layers, "layers")
    found: dict[int, Tensor] = {}
    with eval_mode(model), torch.no_grad():
        for index, weights in enumerate(_attention_by_layer(model, images, last=max(take))):
            if index in take:
                found[index] = weights
    return torch.stack([found[index] for index in take])


def attention_rollout(
    model: ViT,
    images: Tensor,
    *,
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
) -> Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): how much each token draws on each input token.

    Per layer the heads are fused, the residual connection is accounted for as in the paper
    (``0.5 * A + 0.5 * I``, rows renormalised to 1), and the layers are multiplied from the first
    to the last: ``R = A_L ... A_2 A_1``. Only the running product and one layer's attention are
    held at a time.

    Args:
        model: A [`ViT`][vitlib.ViT].
        images: ``(B, C, H, W)``.
        head_fusion: ``"mean"`` (the paper), ``"max"`` or ``"min"`` over the heads.
        discard_ratio: Fraction in ``[0, 1)`` of each layer's smallest fused weights (over the
            whole ``T x T`` matrix of each image) set to 0 before the residual is added, which
            sharpens the map (as jacobgil/vit-explain does); 0 keeps them all.

    Returns:
        ``(B, T, T)`` in float32: row ``i`` is token ``i``'s output's share of every input token
        (each row sums to 1). With a class token, row 0 is its; see
        [`rollout_map`][vitlib.analysis.rollout_map] for the output's map over the patches.

    Raises:
        TypeError: ``model`` is not a ``ViT``, or ``discard_ratio`` is not a number.
        ValueError: Unknown ``head_fusion``, or ``discard_ratio`` outside ``[0, 1)``.
        InputShapeError: ``images`` does not fit the model, or is an empty batch (B = 0).
        DataError: The attention weights are NaN or infinite (NaN images or weights).
    """
    _check_model(model, "attention_rollout")
    check_choice("head_fusion", head_fusion, _HEAD_FUSIONS)
    ratio = check_number(
        "discard_ratio",
        discard_ratio,
        low=0.0,
        high=1.0,
        high_open=True,
        fix="it is the fraction of the smallest weights dropped per layer, e.g. 0.9 (0.0 keeps "
        "them all)",
    )
    rollout: Tensor | None = None
    with eval_mode(model), torch.no_grad():
        for weights in _attention_by_layer(model, images):
            fused = reduce(weights.float(), "b h i j -> b i j", head_fusion)
            if ratio > 0.0:
                fused = _discard_smallest(fused, ratio)
            identity = torch.eye(fused.shape[-1], device=fused.device)
            step = 0.5 * fused + 0.5 * identity
            step = step / step.sum(dim=-1, keepdim=True)
            rollout = step if rollout is None else step @ rollout
    if rollout is None:  # unreachable: a ViT has at least one layer (ViTConfig checks it)
        raise ConfigError("the model has no encoder layers")
    return rollout


def rollout_map(
    model: ViT,
    images: Tensor,
    *,
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
) -> Tensor:
    """The model output's attention over the image patches, by rollout (the paper's Fig. 6).

    The output token is the class token for ``pool="token"``; for ``pool="mean"`` it is the mean
    of the patch tokens, so their rollout rows are averaged. The columns of the class and
    register tokens are left out (so a map sums to less than 1 by what they take).

    Args:
        model: A [`ViT`][vitlib.ViT].
        images: ``(B, C, H, W)``.
        head_fusion: As for [`attention_rollout`][vitlib.analysis.attention_rollout].
        discard_ratio: As for [`attention_rollout`][vitlib.analysis.attention_rollout].

    Returns:
        ``(B, H / P, W / P)``: one value per patch, in float32.

    Raises:
        TypeError, ValueError, InputShapeError: As
            [`attention_rollout`][vitlib.analysis.attention_rollout].
    """
    rollout = attention_rollout(model, images, head_fusion=head_fusion, discard_ratio=discard_ratio)
    prefix = model.config.num_prefix_tokens
    rows, cols = model.patch_embedding.grid_size(images.shape[-2], images.shape[-1])
    if model.config.pool == "token":
        output = rollout[:, 0, prefix:]
    else:
        output = rollout[:, prefix:, prefix:].mean(dim=1)
    return rearrange(output, "b (rows cols) -> b rows cols", rows=rows, cols=cols)


def mean_attention_distance(model: ViT, images: Tensor) -> Tensor:
    """How far each head attends, in input pixels (the paper's Fig. 7 right and Appendix D.7).

    For each query patch, the distance from its centre to every other patch centre is
    weighted by the attention from the query to that patch; then it is averaged over the query
    patches and the images. Attention to the class and register tokens (which have no place in
    the image) is left out and the patch weights renormalised to sum to 1. One layer's
    attention is held at a time.

    Args:
        model: A [`ViT`][vitlib.ViT].
        images: ``(B, C, H, W)``; the paper averages over 128 images.

    Returns:
        ``(layers, heads)`` in float32 pixels; at most the image's diagonal.

    Raises:
        TypeError: ``model`` is not a ``ViT``.
        InputShapeError: ``images`` does not fit the model, or is an empty batch (B = 0).
        DataError: The attention weights are NaN or infinite (NaN images or weights).
    """
    _check_model(model, "mean_attention_distance")
    prefix = model.config.num_prefix_tokens
    per_layer = []
    with eval_mode(model), torch.no_grad():
        layers = _attention_by_layer(model, images)  # checks the images first
        grid = model.patch_embedding.grid_size(images.shape[-2], images.shape[-1])
        distances = _patch_distances(grid, model.patch_embedding.patch_size)
        for weights in layers:
            patch_weights = weights[..., prefix:, prefix:].float()
            patch_weights = patch_weights / patch_weights.sum(dim=-1, keepdim=True).clamp_min(
                torch.finfo(torch.float32).tiny
            )
            per_query = (patch_weights * distances.to(patch_weights.device)).sum(dim=-1)
            per_layer.append(reduce(per_query, "b h queries -> h", "mean"))
    return torch.stack(per_layer)


def position_embedding_similarity(model: ViT) -> Tensor:
    """Cosine similarity of every patch's position embedding with every other's (Fig. 7 centre).

    The class token's position embedding is left out. A zero embedding has similarity 0.

    Args:
        model: A [`ViT`][vitlib.ViT].

    Returns:
        ``(rows, cols, rows, cols)`` in float32, ``rows x cols`` the model's patch grid
        (``config.grid_size``): entry ``[r, c, r2, c2]`` compares patch ``(r, c)`` with patch
        ``(r2, c2)``; ``[r, c]`` is the tile the paper draws for patch ``(r, c)``.

    Raises:
        TypeError: ``model`` is not a ``ViT``.
    """
    _check_model(model, "position_embedding_similarity")
    rows, cols = model.config.grid_size
    embeddings = model.position_embedding.detach()[0, int(model.config.class_token) :].float()
    unit = F.normalize(embeddings, dim=-1)
    similarity = unit @ unit.T
    return rearrange(similarity, "(r c) (r2 c2) -> r c r2 c2", r=rows, c=cols, r2=rows, c2=cols)


def embedding_filters(model: ViT, k: int = 28) -> Tensor:
    """The top ``k`` principal components of the patch projection ``E`` (Fig. 7 left).

    Each of the ``D`` filters of ``E`` (eq. 1) is a ``C x P x P`` image; the filters are
    centred (their mean subtracted) and their principal components, the right singular vectors
    of the centred ``D x (C P P)`` matrix, taken in order of decreasing variance. Each component
    is a unit vector whose largest entry (by magnitude) is made positive, so the sign is fixed.

    Args:
        model: A [`ViT`][vitlib.ViT].
        k: How many components, from 1 to ``min(D - 1, C * P_h * P_w)`` (centring ``D``
            filters leaves at most ``D - 1`` directions of variance); the paper shows 28.

    Returns:
        ``(k, C, P_h, P_w)`` in float32, one filter image per component.

    Raises:
        TypeError: ``model`` is not a ``ViT``, or ``k`` is not an int.
        ValueError: ``k`` is out of range.
    """
    _check_model(model, "embedding_filters")
    weight = model.patch_embedding.patcher.weight.detach()
    filters, channels, patch_h, patch_w = weight.shape
    available = min(filters - 1, channels * patch_h * patch_w)
    check_int(
        "k",
        k,
        minimum=1,
        maximum=available,
        fix=f"the {filters} filters of {channels}x{patch_h}x{patch_w} pixels have at most "
        f"{available} principal components",
    )
    flat = rearrange(weight.double(), "d c ph pw -> d (c ph pw)")
    _, _, components = torch.linalg.svd(flat - flat.mean(dim=0), full_matrices=False)
    top = components[:k]
    largest = top.gather(1, top.abs().argmax(dim=1, keepdim=True))
    top = top * torch.where(largest < 0, -1.0, 1.0)
    images: Tensor = top.float().view(k, channels, patch_h, patch_w)
    return images


def _check_model(model: object, function: str) -> None:
    check_type(
        "model",
        model,
        ViT,
        f"a vitlib.ViT for {function} (vitlib.create_model(...) or vitlib.load_pretrained(...))",
    )


def check_batch_not_empty(images: Tensor) -> None:
    """Refuse a batch of no images, ``(0, C, H, W)``: there is nothing to analyse or draw (an
    average over it would be NaN).

    The one check of every analysis that runs the model on images (through
    ``_attention_by_layer``) and of every picture of images (``plots.displayable``).

    Raises:
        InputShapeError: ``images`` holds no image.
    """
    if len(images) == 0:
        raise InputShapeError(
            f"images is an empty batch (shape {tuple(images.shape)}); pass at least one image, "
            "shaped (B, C, H, W) with B >= 1"
        )


def _attention_by_layer(model: ViT, images: Tensor, last: int | None = None) -> Iterator[Tensor]:
    """Check and embed ``images`` at once (``ViT.embed``'s checks, then at least one image),
    then return an iterator that runs the encoder block by block (``ViT.block_outputs``),
    yielding each block's weights ``(B, heads, T, T)``.

    Every analysis that runs the model goes through here. A hook on each block's attention
    asks for the weights (the explicit softmax path) and hands the block only the output, so
    the residuals, LayerScale and the MLP are exactly the model's. Blocks after ``last`` are
    not run. Weights that are not finite (from NaN images or weights) raise ``DataError``.
    """
    tokens = model.embed(images)
    check_batch_not_empty(images)
    return _weights_of_blocks(model, tokens, last)


def _weights_of_blocks(model: ViT, tokens: Tensor, last: int | None) -> Iterator[Tensor]:
    captured: list[Tensor] = []
    with _returning_weights(model, captured):
        for index, _ in enumerate(model.block_outputs(tokens, last=last)):
            weights = captured.pop()
            if not bool(torch.isfinite(weights).all()):
                raise DataError(
                    f"the attention weights of block {index} are NaN or infinite, so every "
                    "analysis of them would be; expected finite images and weights. Check "
                    "torch.isfinite(images).all() and the model's parameters."
                )
            yield weights


@contextmanager
def _returning_weights(model: ViT, captured: list[Tensor]) -> Iterator[None]:
    def ask_for_weights(
        module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return args, {**kwargs, "need_weights": True}

    def keep_weights(module: nn.Module, args: tuple[Any, ...], output: Any) -> Tensor:
        attended: Tensor = output[0]
        captured.append(output[1])
        return attended

    handles = []
    for index, block in enumerate(model.transformer_encoder):
        attention = block.get_submodule("msa_block")
        if not isinstance(attention, MultiheadSelfAttentionBlock):
            raise InputTypeError(
                f"block {index} has a {type(attention).__name__} as msa_block, not a "
                f"MultiheadSelfAttentionBlock; the analyses read its attention weights."
            )
        handles += [
            attention.register_forward_pre_hook(ask_for_weights, with_kwargs=True),
            attention.register_forward_hook(keep_weights),
        ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _discard_smallest(fused: Tensor, ratio: float) -> Tensor:
    """Zero the ``ratio`` smallest entries of each image's ``(T, T)`` matrix."""
    flat = rearrange(fused, "b i j -> b (i j)")
    count = int(flat.shape[-1] * ratio)
    if count == 0:
        return fused
    smallest = flat.topk(count, dim=-1, largest=False).indices
    kept = flat.scatter(-1, smallest, 0.0)
    return kept.view_as(fused)


def _patch_distances(grid: tuple[int, int], patch_size: tuple[int, int]) -> Tensor:
    """``(N, N)`` distances in pixels between the patch centres of a ``rows x cols`` grid."""
    rows, cols = grid
    row_index, col_index = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    centres = torch.stack(
        [row_index.flatten() * patch_size[0], col_index.flatten() * patch_size[1]], dim=-1
    ).double()
    return torch.cdist(centres, centres).float()
