"""``ViTConfig``: the one vocabulary for a ViT, its presets (paper Table 1) and preset names.

Field names are exactly the keyword arguments of [`ViT`][vitlib.ViT] (those of the learnpytorch.io
chapter), plus keyword-only extras, so ``ViT(**cfg.to_dict())`` and ``ViT.from_config(cfg)`` build
the same model.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple, get_args

from vitlib._checks import (
    check_bool,
    check_choice,
    check_divisible,
    check_heads,
    check_layer_norm_eps,
    check_layer_scale_init,
    check_names,
    check_non_negative_int,
    check_positive_int,
    check_rate,
    check_type,
    did_you_mean,
    to_pair,
)
from vitlib.errors import ConfigError, InputTypeError

__all__ = [
    "PRESET_DROPOUT",
    "SIZES",
    "PoolKind",
    "SizeSpec",
    "ViTConfig",
    "list_presets",
    "parse_preset_name",
]

PoolKind = Literal["token", "mean"]
_POOL_KINDS: Final[tuple[PoolKind, ...]] = get_args(PoolKind)


class SizeSpec(NamedTuple):
    """One row of the paper's Table 1: the size of a ViT, independent of its patch size."""

    name: str
    num_transformer_layers: int
    embedding_dim: int
    mlp_size: int
    num_heads: int


#: Table 1 of Dosovitskiy et al. (2020) for B, L and H; Ti and S from DeiT (Touvron et al., 2021).
SIZES: Final[dict[str, SizeSpec]] = {
    "Ti": SizeSpec("Tiny", 12, 192, 768, 3),
    "S": SizeSpec("Small", 12, 384, 1536, 6),
    "B": SizeSpec("Base", 12, 768, 3072, 12),
    "L": SizeSpec("Large", 24, 1024, 4096, 16),
    "H": SizeSpec("Huge", 32, 1280, 5120, 16),
}

#: Published size/patch combinations, listed by [`list_presets`][vitlib.list_presets]; any patch
#: size parses.
_PUBLISHED: Final[tuple[tuple[str, int], ...]] = (
    ("Ti", 16),
    ("S", 8),
    ("S", 16),
    ("S", 32),
    ("B", 8),
    ("B", 16),
    ("B", 32),
    ("L", 14),
    ("L", 16),
    ("L", 32),
    ("H", 14),
)

_SIZE_BY_WORD: Final[dict[str, str]] = {spec.name.lower(): key for key, spec in SIZES.items()}
_SIZE_BY_LETTER: Final[dict[str, str]] = {key.lower(): key for key in SIZES}
#: The dropout of every preset and of every loaded checkpoint whose config does not state its
#: own: none (see [`from_preset`][vitlib.ViTConfig.from_preset]).
PRESET_DROPOUT: Final = {"attn_dropout": 0.0, "mlp_dropout": 0.0, "embedding_dropout": 0.0}
# Overriding one of these makes a preset another architecture, which then loses the preset's name.
_SIZE_FIELDS: Final = frozenset(
    {"patch_size", "num_transformer_layers", "embedding_dim", "mlp_size", "num_heads"}
)

# "ViT-B/16", "vit_b_16" (torchvision), "B/16" (big_vision), "vit-b-16", optionally "@384".
_SHORT_NAME = re.compile(r"^(?:vit[-_ ]?)?(ti|s|b|l|h)[/_-]?(\d+)(?:@(\d+))?$", re.IGNORECASE)
# "vit_base_patch16_224" (timm), with an optional pretrained tag such as ".augreg_in21k".
_TIMM_NAME = re.compile(
    r"^vit_(tiny|small|base|large|huge)_patch(\d+)(?:_(\d+))?(?:\.[\w.-]+)?$", re.IGNORECASE
)


def parse_preset_name(name: str) -> tuple[str, int, int | None]:
    """Decode a preset name into ``(size_key, patch_size, img_size or None)``.

    Accepts ``"ViT-B/16"``, ``"B/16"``, ``"vit_b_16"``, ``"ViT-L/14@336"`` and timm's
    ``"vit_base_patch16_384"``; the size letter is case-insensitive and the patch size is free.

    Raises:
        TypeError: ``name`` is not a string.
        ConfigError: the name matches no known form; the message lists close matches.
    """
    check_type("preset name", name, str, "a str such as 'ViT-B/16'")
    text = name.strip()
    short = _SHORT_NAME.match(text)
    if short:
        letter, patch, size = short.groups()
        return _SIZE_BY_LETTER[letter.lower()], int(patch), int(size) if size else None
    timm_style = _TIMM_NAME.match(text)
    if timm_style:
        word, patch, size = timm_style.groups()
        return _SIZE_BY_WORD[word.lower()], int(patch), int(size) if size else None
    hint = did_you_mean(text, [*list_presets(), *_aliases()], n=3, cutoff=0.5)
    raise ConfigError(
        f"unknown ViT preset {name!r}{hint}. Expected 'ViT-<size>/<patch>' with size one of "
        f"{', '.join(SIZES)} (e.g. 'ViT-B/16'), torchvision's 'vit_b_16' or timm's "
        f"'vit_base_patch16_224'; see vitlib.list_presets()."
    )


def list_presets() -> list[str]:
    """Return the canonical names of the published presets, e.g. ``["ViT-Ti/16", ...]``.

    Any patch size parses (``"ViT-S/4"`` works too); these are the combinations with published
    weights.
    """
    return [f"ViT-{size}/{patch}" for size, patch in _PUBLISHED]


def _aliases() -> list[str]:
    short = [f"vit_{size.lower()}_{patch}" for size, patch in _PUBLISHED]
    timm = [f"vit_{SIZES[size].name.lower()}_patch{patch}_224" for size, patch in _PUBLISHED]
    return short + timm


@dataclass(frozen=True)
class ViTConfig:
    """The complete, validated description of a ViT architecture.

    The positional fields are the [`ViT`][vitlib.ViT] arguments of the learnpytorch.io chapter,
    with its defaults (ViT-B/16, 1000 classes); the keyword-only fields are extras, off by default.

    Args:
        img_size: Input image size, an int or ``(height, width)``; divisible by ``patch_size``.
        in_channels: Image channels ``C``.
        patch_size: Patch side ``P`` (eq. 1), an int or ``(height, width)``.
        num_transformer_layers: Encoder depth ``L``.
        embedding_dim: Token width ``D``; divisible by ``num_heads``.
        mlp_size: Hidden width of each MLP block.
        num_heads: Attention heads ``k``.
        attn_dropout: Dropout on the attention weights (training only).
        mlp_dropout: Dropout after each MLP dense layer (training only).
        embedding_dropout: Dropout after adding position embeddings (training only).
        num_classes: Head outputs; 0 removes the head and returns pooled features.
        qkv_bias: Whether the query/key/value projection has a bias.
        layer_norm_eps: Epsilon of every LayerNorm (1e-6 as in the reference code; the chapter's
            ``nn.LayerNorm`` default is 1e-5, Hugging Face uses 1e-12).
        pool: ``"token"`` takes the class token (eq. 4); ``"mean"`` averages the patch tokens.
        representation_size: If set, a tanh "pre-logits" layer of this width before the head
            (used when pre-training on ImageNet-21k, Sec. 3.1).
        drop_path_rate: Stochastic-depth rate of the last block, rising linearly from 0.
        layer_scale_init: If set, LayerScale (Touvron et al., 2021) with this initial value.
        class_token: Whether to prepend the learnable class token (requires it for pool "token").
        num_register_tokens: Extra learnable tokens after the class token, without position
            embeddings (Darcet et al., 2023); excluded from pooling.
        dynamic_img_size: If True, inputs of any size divisible by the patch size are accepted and
            the position embeddings are resampled for them at run time.
        name: The preset's name (``"ViT-B/16"``), set by
            [`from_preset`][vitlib.ViTConfig.from_preset] unless an override changes the
            architecture; informational, ignored by ``==``.
    """

    img_size: int | tuple[int, int] = 224
    in_channels: int = 3
    patch_size: int | tuple[int, int] = 16
    num_transformer_layers: int = 12
    embedding_dim: int = 768
    mlp_size: int = 3072
    num_heads: int = 12
    attn_dropout: float = 0.0
    mlp_dropout: float = 0.1
    embedding_dropout: float = 0.1
    num_classes: int = 1000
    _: dataclasses.KW_ONLY
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-6
    pool: PoolKind = "token"
    representation_size: int | None = None
    drop_path_rate: float = 0.0
    layer_scale_init: float | None = None
    class_token: bool = True
    num_register_tokens: int = 0
    dynamic_img_size: bool = False
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for pair_field in ("img_size", "patch_size"):
            value = getattr(self, pair_field)
            if isinstance(value, list):
                object.__setattr__(self, pair_field, tuple(value))
            to_pair(pair_field, getattr(self, pair_field))
        for count in ("in_channels", "num_transformer_layers", "embedding_dim", "mlp_size"):
            check_positive_int(count, getattr(self, count))
        check_positive_int("num_heads", self.num_heads)
        for rate in ("attn_dropout", "mlp_dropout", "embedding_dropout", "drop_path_rate"):
            check_rate(rate, getattr(self, rate))
        for switch in ("qkv_bias", "class_token", "dynamic_img_size"):
            check_bool(switch, getattr(self, switch))
        check_non_negative_int("num_classes", self.num_classes)
        check_non_negative_int("num_register_tokens", self.num_register_tokens)
        if self.representation_size is not None:
            check_positive_int("representation_size", self.representation_size)
        check_layer_norm_eps(self.layer_norm_eps)
        check_layer_scale_init(self.layer_scale_init)
        check_choice("pool", self.pool, _POOL_KINDS)
        if self.name is not None and not isinstance(self.name, str):
            raise InputTypeError(f"name must be a str or None, got {type(self.name).__name__}.")
        check_divisible("img_size", self.image_hw, "patch_size", self.patch_hw)
        check_heads(self.embedding_dim, self.num_heads)
        if self.pool == "token" and not self.class_token:
            raise ConfigError(
                "pool='token' needs the class token, but class_token=False; "
                "set pool='mean' or class_token=True."
            )

    @property
    def image_hw(self) -> tuple[int, int]:
        """``(height, width)`` of the input image."""
        return to_pair("img_size", self.img_size)

    @property
    def patch_hw(self) -> tuple[int, int]:
        """``(height, width)`` of one patch."""
        return to_pair("patch_size", self.patch_size)

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patches per column and per row."""
        (height, width), (patch_h, patch_w) = self.image_hw, self.patch_hw
        return height // patch_h, width // patch_w

    @property
    def num_patches(self) -> int:
        """``N = HW / P^2`` (eq. 1)."""
        rows, cols = self.grid_size
        return rows * cols

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patches: the class token (if any) and the register tokens."""
        return int(self.class_token) + self.num_register_tokens

    @property
    def num_features(self) -> int:
        """Width of the pooled features that feed the head."""
        return self.representation_size or self.embedding_dim

    @classmethod
    def from_preset(cls, preset: str, /, **overrides: Any) -> ViTConfig:
        """Build the config of a named preset, with any field overridden by keyword.

        A preset has no dropout (``PRESET_DROPOUT``), as timm, torchvision and Hugging Face build
        theirs and as the paper fine-tunes, so a preset equals the same preset loaded from any
        checkpoint; the chapter's ``ViTConfig()`` keeps its 0.1 MLP and embedding dropout.

        Examples:
            >>> ViTConfig.from_preset("ViT-B/16", num_classes=3).num_classes
            3
        """
        size_key, patch, img_size = parse_preset_name(preset)
        size = SIZES[size_key]
        values: dict[str, Any] = {
            **PRESET_DROPOUT,
            "patch_size": patch,
            "num_transformer_layers": size.num_transformer_layers,
            "embedding_dim": size.embedding_dim,
            "mlp_size": size.mlp_size,
            "num_heads": size.num_heads,
            "name": f"ViT-{size_key}/{patch}",
        }
        if img_size is not None:
            values["img_size"] = img_size
        check_field_names(overrides, "from_preset")
        if _SIZE_FIELDS & set(overrides) and "name" not in overrides:
            values["name"] = None  # no longer the preset's architecture
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Return every field as a JSON-ready dict (pairs become lists), ``name`` included."""
        data = {name: getattr(self, name) for name in field_names()}
        return {
            key: list(value) if isinstance(value, tuple) else value for key, value in data.items()
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ViTConfig:
        """Inverse of [`to_dict`][vitlib.ViTConfig.to_dict]; unknown keys are named in the error."""
        check_type("data", data, Mapping, "a mapping of ViTConfig fields")
        check_field_names(data, "from_dict")
        return cls(**dict(data))

    def to_json(self) -> str:
        """Serialise to a JSON string (see [`to_dict`][vitlib.ViTConfig.to_dict])."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ViTConfig:
        """Parse a string written by [`to_json`][vitlib.ViTConfig.to_json]."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"config is not valid JSON: {error}") from error
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> ViTConfig:
        """Return a copy with some fields changed (validated again)."""
        check_field_names(changes, "replace")
        return dataclasses.replace(self, **changes)


def field_names() -> list[str]:
    """Names accepted by [`ViTConfig`][vitlib.ViTConfig] and [`ViT`][vitlib.ViT], in order."""
    return [f.name for f in dataclasses.fields(ViTConfig) if f.name != "_"]


def check_field_names(keys: Iterable[str], where: str) -> None:
    """Refuse, naming the closest field, each key of ``keys`` that is not a ``ViTConfig`` field;
    ``where`` names the caller."""
    check_names(keys, field_names(), where, "ViTConfig field")
