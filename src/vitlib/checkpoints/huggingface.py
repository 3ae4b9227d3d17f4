"""Hugging Face transformers' ``ViTModel`` / ``ViTForImageClassification`` <-> vitlib.

Query, key and value are separate linear layers there and one fused ``qkv`` here: they are
concatenated (q, k, v rows) on the way in and split on the way out. ``ViTModel``'s pooler
(``Linear`` + tanh on the class token) is vitlib's pre-logits layer. Both the on-disk names
(``encoder.layer.N.attention.attention.query``) and the in-memory names of transformers 5
(``layers.N.attention.q_proj``) are read; the on-disk names are written. A leading ``vit.``
(the classification model's backbone prefix) is optional.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import torch
from torch import Tensor

from vitlib.checkpoints import keys as slots
from vitlib.checkpoints.family import (
    ConfigFormat,
    Converted,
    Family,
    Table,
    checked_fields,
    count_layers,
    key_pairs,
    rename,
    require,
)
from vitlib.checkpoints.metadata import ModelMetadata
from vitlib.checkpoints.weights import CONFIG_FILE
from vitlib.config import ViTConfig
from vitlib.data.preprocessing import Preprocessing
from vitlib.errors import CheckpointError

__all__ = [
    "FAMILY",
    "config_from_hf",
    "config_to_hf",
    "from_vitlib",
    "labels_from_hf",
    "matches",
    "preprocessing_from_hf",
    "preprocessing_to_hf",
    "read_config",
    "read_preprocessing",
    "to_vitlib",
]

NAME = "huggingface"
#: Hugging Face's image-processor settings, beside ``config.json``.
PREPROCESSOR_FILE: Final = "preprocessor_config.json"

_LAYER = "vit.encoder.layer.{i}"
_TABLE: Table = (
    ("vit.embeddings.cls_token", slots.CLASS_TOKEN),
    ("vit.embeddings.position_embeddings", slots.POSITION),
    ("vit.embeddings.patch_embeddings.projection", slots.PATCH),
    (f"{_LAYER}.layernorm_before", slots.MSA_NORM),
    (f"{_LAYER}.attention.output.dense", slots.OUT_PROJ),
    (f"{_LAYER}.layernorm_after", slots.MLP_NORM),
    (f"{_LAYER}.intermediate.dense", slots.FC1),
    (f"{_LAYER}.output.dense", slots.FC2),
    ("vit.layernorm", slots.NORM),
    ("vit.pooler.dense", slots.PRE_LOGITS),
    ("classifier", slots.HEAD),
)
# Query, key and value: three layers here, vitlib's one fused qkv (split and joined below).
_ATTENTION = f"{_LAYER}.attention.attention"
_QKV = ("query", "key", "value")
# transformers 5 in-memory names -> on-disk names (the first pattern that matches applies).
_IN_MEMORY = tuple(
    (rf"^vit\.layers\.(\d+)\.{re.escape(new)}", rf"vit.encoder.layer.\1.{old}")
    for new, old in (
        ("attention.q_proj.", "attention.attention.query."),
        ("attention.k_proj.", "attention.attention.key."),
        ("attention.v_proj.", "attention.attention.value."),
        ("attention.o_proj.", "attention.output.dense."),
        ("mlp.fc1.", "intermediate.dense."),
        ("mlp.fc2.", "output.dense."),
        ("", ""),
    )
)


def matches(keys: set[str]) -> bool:
    """Whether ``keys`` look like a Hugging Face ViT state dict (with or without ``vit.``)."""
    return any(key.endswith("embeddings.patch_embeddings.projection.weight") for key in keys)


def _on_disk_names(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    renamed: dict[str, Tensor] = {}
    for key, tensor in state.items():
        name = key if key.startswith(("vit.", "classifier.")) else f"vit.{key}"
        for pattern, replacement in _IN_MEMORY:
            name, found = re.subn(pattern, replacement, name)
            if found:
                break
        renamed[name] = tensor
    return renamed


def to_vitlib(state: Mapping[str, Tensor]) -> Converted:
    """Convert a Hugging Face ViT state dict to vitlib's layout."""
    hf = _on_disk_names(state)
    hf.pop("vit.embeddings.mask_token", None)  # only used for masked-image modelling
    depth = count_layers(hf, r"vit\.encoder\.layer\.(\d+)\.")
    fused: dict[str, Tensor] = {}
    for index in range(depth):
        prefix = _ATTENTION.format(i=index)
        for kind in slots.QKV.params:
            names = [f"{prefix}.{part}.{kind}" for part in _QKV]
            if not any(name in hf for name in names):
                continue
            parts = [require(hf, name, NAME) for name in names]
            fused[slots.QKV.key(kind, layer=index)] = torch.cat(parts, dim=0)
            for name in names:
                del hf[name]
    converted = rename(hf, key_pairs(_TABLE), depth, family=NAME)
    converted.update(fused)
    return Converted(NAME, converted, {"layer_norm_eps": 1e-12})


def from_vitlib(state: Mapping[str, Tensor], config: ViTConfig) -> dict[str, Tensor]:
    """Convert a vitlib state dict to the on-disk names of ``ViTForImageClassification``
    (or of ``ViTModel`` with its pooler, for a model with ``num_classes=0`` and pre-logits)."""
    _check_exportable(config)
    state = dict(state)
    split: dict[str, Tensor] = {}
    for index in range(config.num_transformer_layers):
        prefix = _ATTENTION.format(i=index)
        for kind in slots.QKV.params:
            key = slots.QKV.key(kind, layer=index)
            if key in state:
                for part, tensor in zip(_QKV, state.pop(key).chunk(3, dim=0), strict=True):
                    split[f"{prefix}.{part}.{kind}"] = tensor.clone()
    reverse = key_pairs(_TABLE, to_foreign=True)
    exported = rename(state, reverse, config.num_transformer_layers, family="vitlib")
    exported.update(split)
    if config.num_classes == 0:  # ViTModel: no "vit." prefix
        exported = {key.removeprefix("vit."): tensor for key, tensor in exported.items()}
    return exported


def _check_exportable(config: ViTConfig) -> None:
    unsupported = {
        "pool='mean'": config.pool != "token",
        "num_register_tokens > 0": config.num_register_tokens > 0,
        "layer_scale_init": config.layer_scale_init is not None,
        "class_token=False": not config.class_token,
        "non-square patches": config.patch_hw[0] != config.patch_hw[1],
        "non-square images": config.image_hw[0] != config.image_hw[1],
        "representation_size with a head (ViTForImageClassification has no pooler)": (
            config.representation_size is not None and config.num_classes > 0
        ),
        "representation_size != embedding_dim (the pooler keeps the width)": (
            config.representation_size not in (None, config.embedding_dim)
        ),
    }
    found = [name for name, present in unsupported.items() if present]
    if found:
        raise CheckpointError(
            f"Hugging Face's ViT cannot express {', '.join(found)}; export to timm or save in "
            f"vitlib's own format instead."
        )


def config_from_hf(data: Mapping[str, Any]) -> dict[str, Any]:
    """Map a Hugging Face ``ViTConfig`` dict (``config.json``) to vitlib config hints."""
    hints: dict[str, Any] = {
        "img_size": data.get("image_size", 224),
        "patch_size": data.get("patch_size", 16),
        "in_channels": data.get("num_channels", 3),
        "num_transformer_layers": data.get("num_hidden_layers", 12),
        "embedding_dim": data.get("hidden_size", 768),
        "mlp_size": data.get("intermediate_size", 3072),
        "num_heads": data.get("num_attention_heads", 12),
        "layer_norm_eps": data.get("layer_norm_eps", 1e-12),
        "qkv_bias": data.get("qkv_bias", True),
        # Hugging Face's hidden dropout acts after the embeddings and inside the MLP.
        "mlp_dropout": data.get("hidden_dropout_prob", 0.0),
        "embedding_dropout": data.get("hidden_dropout_prob", 0.0),
        "attn_dropout": data.get("attention_probs_dropout_prob", 0.0),
    }
    activation = data.get("hidden_act", "gelu")
    if activation != "gelu":
        raise CheckpointError(
            f"this Hugging Face ViT uses hidden_act={activation!r}; vitlib's MLP uses exact GELU "
            f"('gelu') as the paper does."
        )
    return hints


def read_config(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The fields a Hugging Face ViT ``config.json`` states, type-checked (None for any other
    JSON)."""
    if data.get("model_type") != "vit":
        return None
    return checked_fields(config_from_hf(data))


def config_to_hf(config: ViTConfig, labels: Sequence[str] | None = None) -> dict[str, Any]:
    """A Hugging Face ``ViTConfig`` dict for ``config`` (written by ``save_pretrained``), with
    ``labels`` as its ``id2label``/``label2id`` (``LABEL_<i>``, Hugging Face's default names,
    where there are none)."""
    _check_exportable(config)
    data: dict[str, Any] = {
        "model_type": "vit",
        "architectures": ["ViTForImageClassification" if config.num_classes else "ViTModel"],
        "image_size": config.image_hw[0],
        "patch_size": config.patch_hw[0],
        "num_channels": config.in_channels,
        "num_hidden_layers": config.num_transformer_layers,
        "hidden_size": config.embedding_dim,
        "intermediate_size": config.mlp_size,
        "num_attention_heads": config.num_heads,
        "hidden_act": "gelu",
        "layer_norm_eps": config.layer_norm_eps,
        "qkv_bias": config.qkv_bias,
        "hidden_dropout_prob": config.mlp_dropout,
        "attention_probs_dropout_prob": config.attn_dropout,
        "pooler_act": "tanh",
        "pooler_output_size": config.embedding_dim,
        "encoder_stride": config.patch_hw[0],
    }
    if config.num_classes:
        names = labels if labels is not None else _default_labels(config.num_classes)
        data["id2label"] = {str(index): label for index, label in enumerate(names)}
        data["label2id"] = {label: index for index, label in enumerate(names)}
    return data


def _default_labels(count: int) -> list[str]:
    return [f"LABEL_{index}" for index in range(count)]


def labels_from_hf(data: Mapping[str, Any]) -> list[str] | None:
    """The class names of a Hugging Face ``config.json``'s ``id2label``, in index order.

    ``None`` without ``id2label`` or with Hugging Face's default names (``LABEL_0``...), which
    name no class.

    Raises:
        CheckpointError: ``id2label`` is not an object of ``"index": name`` for indices
            ``0..n-1``.
    """
    id2label = data.get("id2label")
    if id2label is None:
        return None
    keys_of: dict[int, list[str]] = {}
    try:
        for key in id2label:
            keys_of.setdefault(int(key), []).append(str(key))
    except (AttributeError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"'id2label' must map class indices to names, got {id2label!r:.80}"
        ) from error
    colliding = [keys for keys in keys_of.values() if len(keys) > 1]
    if colliding:
        raise CheckpointError(
            f"'id2label' has keys that name the same class index: {colliding[:3]}; expected one "
            "key per index, written '0', '1', ..."
        )
    indexed = {int(key): name for key, name in id2label.items()}
    if sorted(indexed) != list(range(len(indexed))):
        raise CheckpointError(
            f"'id2label' has indices {sorted(indexed)[:10]}; expected 0 to {len(indexed) - 1}"
        )
    names = [indexed[index] for index in range(len(indexed))]
    return None if names == _default_labels(len(names)) else names


# Pillow's resampling filters by number, as preprocessor_config.json stores them.
_RESAMPLE: Final = {0: "nearest-exact", 2: "bilinear", 3: "bicubic"}
_PILLOW_FILTERS: Final = {name: number for number, name in _RESAMPLE.items()}
# ConvNextImageProcessor crops only below this shortest edge; at and above it, it squashes.
_CONVNEXT_CROP_BELOW: Final = 384


def preprocessing_from_hf(data: Mapping[str, Any], channels: int) -> dict[str, Any]:
    """``Preprocessing`` fields from a ``preprocessor_config.json``.

    A ``ViTImageProcessor`` resizes straight to ``size`` (``"squash"``); a
    ``ConvNextImageProcessor`` resizes the shortest edge to ``shortest_edge / crop_pct`` and
    crops the centre (``"center_crop"``). The values are checked by ``Preprocessing``.

    Raises:
        CheckpointError: It prepares images in a way vitlib cannot (no resize or normalisation,
            another crop, an unknown filter, a ``size`` without both sides); the message names
            the field.
    """
    for flag in ("do_resize", "do_normalize"):
        if not data.get(flag, True):
            raise CheckpointError(f"'{flag}' is false; vitlib always resizes and normalises")
    resample = data.get("resample", 2)
    size = data.get("size", {"height": 224, "width": 224})
    if resample not in _RESAMPLE:
        raise CheckpointError(
            f"'resample' is {resample!r}; vitlib has Pillow's filters {sorted(_RESAMPLE)}"
        )
    if not isinstance(size, Mapping):
        raise CheckpointError(f"'size' must be an object, got {size!r:.80}")
    fields: dict[str, Any] = {
        "channels": channels,
        "mean": data.get("image_mean", [0.5] * channels),
        "std": data.get("image_std", [0.5] * channels),
        "interpolation": _RESAMPLE[resample],
    }
    if "crop_pct" in data and "shortest_edge" in size:
        crop = {"resize": "center_crop", "crop_ratio": data["crop_pct"]}
        return {**fields, "image_size": size["shortest_edge"], **crop}
    if data.get("do_center_crop", False):
        raise CheckpointError("'do_center_crop' is true with a 'size' vitlib cannot crop to")
    if "height" not in size or "width" not in size:
        raise CheckpointError(f"'size' must have 'height' and 'width', got {dict(size)!r:.80}")
    image_size = (size["height"], size["width"])
    return {**fields, "image_size": image_size, "resize": "squash", "crop_ratio": 1.0}


def preprocessing_to_hf(spec: Preprocessing) -> dict[str, Any] | None:
    """A ``preprocessor_config.json`` that ``transformers``' ``AutoImageProcessor`` loads and
    that prepares images as ``spec`` does: a ``ViTImageProcessor`` for ``"squash"``, a
    ``ConvNextImageProcessor`` for a square ``"center_crop"`` below 384 pixels; None for any
    other (Hugging Face has no processor that crops a non-square centre)."""
    common: dict[str, Any] = {
        "do_resize": True,
        "resample": _PILLOW_FILTERS[spec.interpolation],
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(spec.mean),
        "image_std": list(spec.std),
    }
    height, width = spec.image_size
    if spec.resize == "squash":
        size = {"height": height, "width": width}
        return {"image_processor_type": "ViTImageProcessor", **common, "size": size}
    if height != width or height >= _CONVNEXT_CROP_BELOW:
        return None
    return {
        "image_processor_type": "ConvNextImageProcessor",
        **common,
        "size": {"shortest_edge": height},
        "crop_pct": spec.crop_ratio,
    }


def read_preprocessing(
    data: Mapping[str, Any], side_files: Mapping[str, Mapping[str, Any]], config: ViTConfig
) -> dict[str, Any] | None:
    """The preprocessing of ``preprocessor_config.json``, if it is there."""
    processor = side_files.get(PREPROCESSOR_FILE)
    return None if processor is None else preprocessing_from_hf(processor, config.in_channels)


def write(config: ViTConfig, metadata: ModelMetadata) -> dict[str, dict[str, Any]]:
    """``config.json`` (with the class names as ``id2label``/``label2id``) and, where the
    preprocessing is one a ``ViTImageProcessor`` can express, ``preprocessor_config.json``."""
    files = {CONFIG_FILE: config_to_hf(config, metadata.labels)}
    processor = (
        None if metadata.preprocessing is None else preprocessing_to_hf(metadata.preprocessing)
    )
    if processor is not None:
        files[PREPROCESSOR_FILE] = processor
    return files


FAMILY: Final = Family(
    NAME,
    "Hugging Face",
    matches,
    to_vitlib,
    from_vitlib,
    ConfigFormat(
        "'model_type': 'vit'",
        read_config,
        labels_from_hf,
        read_preprocessing,
        side_files=(PREPROCESSOR_FILE,),
        preprocessing_file=PREPROCESSOR_FILE,
        write=write,
    ),
)
