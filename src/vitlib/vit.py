"""The Vision Transformer of Dosovitskiy et al. (2020), eq. 1-4, built from `vitlib.blocks`."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any, Final, Literal, NamedTuple

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from vitlib._checks import (
    check_bool,
    check_choice,
    check_divisible,
    check_fits_in_memory,
    check_input_tensor,
    check_int,
    check_positive_float,
    check_sequence,
    check_type,
)
from vitlib.blocks import LayerScale, PatchEmbedding, TransformerEncoderBlock
from vitlib.config import ViTConfig, check_field_names
from vitlib.counting import parameter_breakdown
from vitlib.errors import ConfigError, InputShapeError
from vitlib.position import resample_position_embedding

__all__ = [
    "ClassTokenPool",
    "IntermediateFormat",
    "Intermediates",
    "MeanPool",
    "ViT",
    "create_model",
    "select_blocks",
]

IntermediateFormat = Literal["tokens", "nchw"]
"""How [`forward_intermediates`][vitlib.ViT.forward_intermediates] shapes each block's output."""
_INTERMEDIATE_FORMATS: Final[tuple[IntermediateFormat, ...]] = ("tokens", "nchw")


class Intermediates(NamedTuple):
    """What [`forward_intermediates`][vitlib.ViT.forward_intermediates] returns.

    Attributes:
        features: The output of [`forward_features`][vitlib.ViT.forward_features] (every block,
            then the final norm), ``(B, prefix + N, D)``; ``None`` with ``stop_early=True``.
        intermediates: One tensor per requested block, in the order of ``indices``: with
            ``output="tokens"`` the block's whole output ``(B, prefix + N, D)``; with
            ``output="nchw"`` its patch tokens as a map ``(B, D, H / P, W / P)``.
        prefix_tokens: One ``(B, prefix, D)`` tensor per requested block: the class and
            register tokens of that block's output (``(B, 0, D)`` without them).
        indices: The blocks taken, counted from 0, in the order of ``intermediates``.
    """

    features: Tensor | None
    intermediates: list[Tensor]
    prefix_tokens: list[Tensor]
    indices: tuple[int, ...]


class ViT(nn.Module):
    """Vision Transformer (eq. 1-4).

    - eq. 1: patch embedding, class token prepended, learnable position embeddings added;
    - eq. 2-3: ``num_transformer_layers`` encoder blocks;
    - eq. 4: final layer norm, pooling (class token or mean of patch tokens), optional tanh
      pre-logits layer, linear head.

    Built from a [`ViTConfig`][vitlib.ViTConfig], from its fields by keyword (the
    learnpytorch.io chapter's ``ViT(img_size=224, ..., num_classes=3)`` with its defaults), or
    both: ``ViT(config, num_classes=3)``. The config is kept as ``model.config``.

    Weights are initialised as timm's default (from the reference JAX code; docs/architecture.md
    lists each), reproducibly under ``torch.manual_seed``.

    Args:
        config: The architecture; ``None`` builds ``ViTConfig(**fields)``.
        **fields: [`ViTConfig`][vitlib.ViTConfig] fields by keyword, where each is documented;
            with ``config`` they replace its own.

    Raises:
        ConfigError: A field is out of range, or the parameters alone would not fit in memory.
        InputTypeError: ``config`` is not a ``ViTConfig``, a field has the wrong type, or a
            keyword is no ``ViTConfig`` field.

    Shape:
        ``(B, C, H, W) -> (B, num_classes)``; with ``num_classes=0``, ``(B, num_features)``.
    """

    def __init__(self, config: ViTConfig | None = None, /, **fields: Any) -> None:
        super().__init__()
        check_field_names(fields, "ViT")
        if config is None:
            config = ViTConfig(**fields)
        else:
            check_type("config", config, ViTConfig, "a vitlib.ViTConfig (or None)")
            config = config.replace(**fields) if fields else config
        check_fits_in_memory(
            f"ViT(img_size={config.img_size}, patch_size={config.patch_size}, "
            f"num_transformer_layers={config.num_transformer_layers}, embedding_dim="
            f"{config.embedding_dim}, mlp_size={config.mlp_size}, ...)",
            parameter_breakdown(config),
            fix="Reduce that field; vitlib.count_parameters(config) gives the count without "
            "building anything, and building under `with torch.device('meta'):` allocates nothing.",
        )
        self.config = config
        dim, depth = config.embedding_dim, config.num_transformer_layers
        self.patch_embedding = PatchEmbedding(config.in_channels, config.patch_hw, dim)
        self.class_embedding = nn.Parameter(torch.zeros(1, 1, dim)) if config.class_token else None
        self.register_tokens = (
            nn.Parameter(torch.zeros(1, config.num_register_tokens, dim))
            if config.num_register_tokens
            else None
        )
        self.position_embedding = nn.Parameter(
            torch.zeros(1, int(config.class_token) + config.num_patches, dim)
        )
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        drop_path_rates = [config.drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.transformer_encoder = nn.Sequential(
            *(
                TransformerEncoderBlock(
                    dim,
                    config.num_heads,
                    config.mlp_size,
                    config.mlp_dropout,
                    config.attn_dropout,
                    drop_path=rate,
                    layer_scale_init=config.layer_scale_init,
                    qkv_bias=config.qkv_bias,
                    layer_norm_eps=config.layer_norm_eps,
                )
                for rate in drop_path_rates
            )
        )
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.pool = (
            ClassTokenPool() if config.pool == "token" else MeanPool(config.num_prefix_tokens)
        )
        self.pre_logits = _pre_logits_or_identity(dim, config.representation_size)
        self.head = _head_or_identity(config.num_features, config.num_classes)
        self.grad_checkpointing = False
        self.reset_parameters()

    def __setattr__(self, name: str, value: Any) -> None:
        """Keep ``config`` describing the model when its head is replaced.

        The chapter's head swap, ``model.head = nn.Linear(model.config.num_features, 5)``, sets
        ``config.num_classes`` to 5 (``nn.Identity()`` sets 0), so what ``save_pretrained`` and
        ``fit`` record loads back. A linear head must read the pooled features; another kind
        of head is kept as given, and ``save_pretrained`` refuses it (its config cannot say it).

        Raises:
            ConfigError: A linear head whose ``in_features`` is not ``config.num_features``.
        """
        if name == "head" and isinstance(value, nn.Module) and "config" in self.__dict__:
            self.__dict__["config"] = _config_for_head(self.config, value)
        super().__setattr__(name, value)

    @classmethod
    def from_config(cls, config: ViTConfig) -> ViT:
        """Build the model described by ``config`` (the very object is kept as ``.config``)."""
        return cls(config)

    @classmethod
    def from_preset(cls, preset: str, /, **overrides: Any) -> ViT:
        """Build a preset such as ``"ViT-B/16"`` with overrides, e.g. ``num_classes=3``."""
        return cls(ViTConfig.from_preset(preset, **overrides))

    def reset_parameters(self, *, position_std: float | None = None) -> None:
        """(Re-)initialise every parameter, as timm does (docs/architecture.md lists each rule).

        Args:
            position_std: Draw the position embeddings from ``N(0, position_std^2)`` instead of
                the reference code's truncated normal with std 0.02; 1.0 (the `vitlib train`
                recipe's default) learns much faster from scratch on small images, as
                docs/training.md shows.

        Raises:
            ConfigError: ``position_std`` is not a finite number > 0.
        """
        if position_std is None:
            nn.init.trunc_normal_(self.position_embedding, std=0.02)
        else:
            nn.init.normal_(
                self.position_embedding, std=check_positive_float("position_std", position_std)
            )
        for token in (self.class_embedding, self.register_tokens):
            if token is not None:
                nn.init.normal_(token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv2d):
                module.reset_parameters()
            elif isinstance(module, LayerScale) and self.config.layer_scale_init is not None:
                nn.init.constant_(module.gamma, self.config.layer_scale_init)

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters that are conventionally excluded from weight decay."""
        names = {"position_embedding", "class_embedding", "register_tokens"}
        return {name for name, _ in self.named_parameters() if name in names}

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patch tokens in the output of
        [`forward_features`][vitlib.ViT.forward_features]."""
        return self.config.num_prefix_tokens

    def forward(self, images: Tensor) -> Tensor:
        """Classify ``images`` ``(B, C, H, W)`` into logits ``(B, num_classes)``.

        Raises:
            InputTypeError: ``images`` is not a tensor, or has another dtype or device than the
                weights (outside ``torch.autocast``).
            InputShapeError: ``images`` has the wrong rank, channels or size.
        """
        return self.forward_head(self.forward_features(images))

    def forward_features(self, images: Tensor) -> Tensor:
        """Eq. 1-3 and the final norm of eq. 4: ``(B, C, H, W) -> (B, prefix + N, D)``.

        The token order is the class token, the register tokens (if any), then the patches row
        by row.
        """
        tokens = self.embed(images)  # eq. 1: z_0
        encoded = self.encode(tokens)  # eq. 2-3: z_L
        normed: Tensor = self.norm(encoded)  # eq. 4: LN(z_L)
        return normed

    def forward_head(self, tokens: Tensor, pre_logits: bool = False) -> Tensor:
        """Eq. 4 after the norm: pool, optional tanh pre-logits, then the head.

        Args:
            tokens: Output of [`forward_features`][vitlib.ViT.forward_features],
                ``(B, prefix + N, D)``.
            pre_logits: Return the pooled features ``(B, num_features)`` instead of the logits.
        """
        _check_tokens(tokens, self.config)
        features: Tensor = self.pre_logits(self.pool(tokens))
        return features if pre_logits else self.head(features)

    def embed(self, images: Tensor) -> Tensor:
        """Eq. 1: patch embeddings, class token, position embeddings, register tokens, dropout.

        The model's input is checked here, once: type, dtype, device, rank, channels and size.
        """
        _check_images(images, self.config, self.position_embedding)
        patches: Tensor = self.patch_embedding(images)
        batch = patches.shape[0]
        if self.class_embedding is not None:
            patches = torch.cat([self.class_embedding.expand(batch, -1, -1), patches], dim=1)
        tokens = patches + self._position_embedding_for(images.shape[-2], images.shape[-1])
        if self.register_tokens is not None:
            registers = self.register_tokens.expand(batch, -1, -1)
            split = int(self.config.class_token)
            tokens = torch.cat([tokens[:, :split], registers, tokens[:, split:]], dim=1)
        dropped: Tensor = self.embedding_dropout(tokens)
        return dropped

    def encode(self, tokens: Tensor) -> Tensor:
        """Eq. 2-3: ``z_0 -> z_L`` through every encoder block."""
        for output in self.block_outputs(tokens):
            tokens = output
        return tokens

    def block_outputs(self, tokens: Tensor, *, last: int | None = None) -> Iterator[Tensor]:
        """Eq. 2-3 block by block: yield ``z_1, ..., z_L`` (or up to block ``last``, from 0).

        The one loop over the encoder (``encode``, ``forward_intermediates`` and `vitlib.analysis`
        run it), gradient checkpointing included.
        """
        checkpointing = self.grad_checkpointing and torch.is_grad_enabled()
        for index, block in enumerate(self.transformer_encoder):
            if last is not None and index > last:
                return
            tokens = (
                checkpoint(block, tokens, use_reentrant=False) if checkpointing else block(tokens)
            )
            yield tokens

    def forward_intermediates(
        self,
        images: Tensor,
        indices: int | Sequence[int] | None = None,
        *,
        norm: bool = False,
        output: IntermediateFormat = "tokens",
        stop_early: bool = False,
    ) -> Intermediates:
        """The outputs of chosen encoder blocks, for probing and dense tasks, and the features.

        The names follow timm's ``forward_intermediates`` and DINOv2's
        ``get_intermediate_layers``; docs/analysis.md compares the three.

        Args:
            images: ``(B, C, H, W)``, as for ``forward``.
            indices: Which blocks (0 is the first): ``None`` for all, an int ``n`` for the last
                ``n``, or a sequence of indices (negative ones count from the end, as in Python).
            norm: Apply the final layer norm (eq. 4's ``LN``) to each intermediate output, as
                ``forward_features`` does to the last one.
            output: ``"tokens"`` for each block's whole output ``(B, prefix + N, D)``;
                ``"nchw"`` for its patch tokens as a feature map ``(B, D, H / P, W / P)``.
            stop_early: Run no block after the last one requested; ``features`` is then None.

        Returns:
            An [`Intermediates`][vitlib.Intermediates]: ``features``, ``intermediates``,
            ``prefix_tokens`` and ``indices``.

        Raises:
            InputTypeError: ``indices`` is not None, an int or a sequence of ints, or ``norm``
                or ``stop_early`` is not a bool.
            ConfigError: An index is out of range, ``indices`` is empty, or ``output`` is
                unknown.
            InputShapeError: ``images`` does not fit the model, as for ``forward``.

        Examples:
            >>> model = vitlib.create_model("ViT-B/16", num_classes=0).eval()
            >>> images = torch.randn(2, 3, 224, 224)
            >>> maps = model.forward_intermediates(images, [3, 7, 11], output="nchw")
            >>> [tuple(m.shape) for m in maps.intermediates]
            [(2, 768, 14, 14), (2, 768, 14, 14), (2, 768, 14, 14)]
            >>> torch.equal(maps.features, model.forward_features(images))
            True
        """
        take = select_blocks(self.config.num_transformer_layers, indices, "indices")
        check_bool("norm", norm)
        check_bool("stop_early", stop_early)
        check_choice("output", output, _INTERMEDIATE_FORMATS)
        tokens = self.embed(images)
        last = max(take) if stop_early else None
        taken: dict[int, Tensor] = {}
        for index, block_output in enumerate(self.block_outputs(tokens, last=last)):
            if index in take:
                taken[index] = self.norm(block_output) if norm else block_output
        prefix = self.config.num_prefix_tokens
        chosen = [taken[index] for index in take]
        if output == "nchw":
            rows, cols = self.patch_embedding.grid_size(images.shape[-2], images.shape[-1])
            chosen = [
                rearrange(t[:, prefix:], "b (rows cols) d -> b d rows cols", rows=rows, cols=cols)
                for t in chosen
            ]
        prefix_tokens = [taken[index][:, :prefix] for index in take]
        features = None if stop_early else self.norm(block_output)
        return Intermediates(features, chosen, prefix_tokens, take)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each encoder block in the backward pass instead of keeping its activations
        (timm's name for the switch; the same gradients, dropout included). Off by default; no
        effect without gradients. docs/deployment.md says more."""
        self.grad_checkpointing = check_bool("enable", enable)

    def _position_embedding_for(self, height: int, width: int) -> Tensor:
        """``E_pos`` for an image of ``height x width``: resampled when its grid is not the
        config's (``dynamic_img_size``)."""
        grid = self.patch_embedding.grid_size(height, width)
        if grid == self.config.grid_size:
            return self.position_embedding
        return resample_position_embedding(
            self.position_embedding,
            self.config.grid_size,
            grid,
            num_prefix_tokens=int(self.config.class_token),
        )


def create_model(preset: str, /, **overrides: Any) -> ViT:
    """Build a preset by name with overrides: ``create_model("ViT-B/16", num_classes=3)``."""
    return ViT.from_preset(preset, **overrides)


class ClassTokenPool(nn.Module):
    """Eq. 4's pooling: the class token's output, ``(B, T, D) -> (B, D)``."""

    def forward(self, tokens: Tensor) -> Tensor:
        """Return the first token."""
        return tokens[:, 0]


class MeanPool(nn.Module):
    """Global average of the patch tokens (class and register tokens excluded), as big_vision's
    "gap" and timm's "avg": ``(B, T, D) -> (B, D)``."""

    def __init__(self, num_prefix_tokens: int) -> None:
        super().__init__()
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, tokens: Tensor) -> Tensor:
        """Average the tokens after the prefix."""
        return tokens[:, self.num_prefix_tokens :].mean(dim=1)


def select_blocks(depth: int, indices: int | Sequence[int] | None, name: str) -> tuple[int, ...]:
    """``indices`` as block numbers in ``[0, depth)``: None is every block, an int ``n`` the
    last ``n`` blocks, a sequence its entries (negative ones counted from the end).

    Raises:
        InputTypeError: ``indices`` is not None, an int or a sequence of ints.
        ConfigError: ``indices`` is empty or out of range.
    """
    if indices is None:
        return tuple(range(depth))
    if isinstance(indices, int) and not isinstance(indices, bool):
        if not 1 <= indices <= depth:
            raise ConfigError(
                f"{name}={indices} asks for the last {indices} blocks of a model with {depth}; "
                f"give an int from 1 to {depth}, a list of block indices (e.g. [-1] for the "
                f"last block alone), or None for all."
            )
        return tuple(range(depth - indices, depth))
    given = check_sequence(name, indices, "None, an int or a sequence of ints such as [3, 7, 11]")
    chosen = [check_int(f"each of {name}", index) for index in given]
    if not chosen:
        raise ConfigError(f"{name} is empty; give at least one block index, or None for all.")
    outside = [i for i in chosen if not -depth <= i < depth]
    if outside:
        raise ConfigError(
            f"{name} {chosen} holds {outside}, outside the {depth} blocks of this model; "
            f"use indices from 0 to {depth - 1} (or -{depth} to -1 from the end)."
        )
    return tuple(i % depth for i in chosen)


def _check_images(images: object, config: ViTConfig, weight: Tensor) -> None:
    """Refuse input the model cannot take: the checks of ``ViT.embed``.

    Raises:
        InputTypeError: Not a tensor, or another dtype or device than ``weight``.
        InputShapeError: Wrong rank or channels; a size not divisible by the patch, or (without
            ``dynamic_img_size``) other than the config's.
    """
    images = check_input_tensor("images", images, weight)
    if images.ndim != 4:
        raise InputShapeError(
            f"expected images shaped (batch, channels, height, width), got a "
            f"{images.ndim}-d tensor of shape {tuple(images.shape)}; "
            f"add a batch dimension with images.unsqueeze(0) for a single image."
        )
    channels, height, width = images.shape[1:]
    if channels != config.in_channels:
        raise InputShapeError(
            f"expected {config.in_channels} input channels, got {channels} "
            f"(images of shape {tuple(images.shape)}); convert the images or build the "
            f"model with in_channels={channels}."
        )
    check_divisible("image size", (height, width), "patch size", config.patch_hw, InputShapeError)
    expected = config.image_hw
    if not config.dynamic_img_size and (height, width) != expected:
        raise InputShapeError(
            f"expected images of size {expected[0]}x{expected[1]}, got {height}x{width} "
            f"(input shape {tuple(images.shape)}); resize the images, or build the model with "
            f"img_size=({height}, {width}) or dynamic_img_size=True to resample position "
            f"embeddings."
        )


def _check_tokens(tokens: object, config: ViTConfig) -> None:
    """Refuse what ``forward_head`` cannot take: anything but ``(B, prefix + N, D)`` tokens."""
    prefix, dim = config.num_prefix_tokens, config.embedding_dim
    if not isinstance(tokens, Tensor) or tokens.ndim != 3 or tokens.shape[-1] != dim:
        shape = tuple(tokens.shape) if isinstance(tokens, Tensor) else type(tokens).__name__
        raise InputShapeError(
            f"forward_head expects the tokens of forward_features, shaped (batch, tokens, "
            f"{dim}), got {shape}; call model.forward_head(model.forward_features(images))."
        )
    if tokens.shape[1] <= prefix:
        raise InputShapeError(
            f"forward_head needs the {prefix} prefix token(s) and at least one patch token, "
            f"got {tokens.shape[1]} token(s) (shape {tuple(tokens.shape)}); pass the whole "
            f"output of forward_features."
        )


def _pre_logits_or_identity(embedding_dim: int, representation_size: int | None) -> nn.Module:
    if representation_size is None:
        return nn.Identity()
    layers = OrderedDict(fc=nn.Linear(embedding_dim, representation_size), act=nn.Tanh())
    return nn.Sequential(layers)


def _config_for_head(config: ViTConfig, head: nn.Module) -> ViTConfig:
    """``config`` with the ``num_classes`` that ``head`` outputs (unchanged for other heads)."""
    if isinstance(head, nn.Linear):
        if head.in_features != config.num_features:
            raise ConfigError(
                f"the new head reads {head.in_features} features, but this model's pooled "
                f"features are {config.num_features} wide (config.num_features); build it as "
                f"nn.Linear(model.config.num_features, {head.out_features})."
            )
        classes = head.out_features
    elif isinstance(head, nn.Identity):
        classes = 0
    else:
        return config
    return config if classes == config.num_classes else config.replace(num_classes=classes)


def _head_or_identity(num_features: int, num_classes: int) -> nn.Module:
    return nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()
