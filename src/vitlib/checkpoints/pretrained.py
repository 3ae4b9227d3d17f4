"""``save_pretrained`` / ``load_pretrained``: one entry point for every checkpoint family."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from vitlib._checks import check_choice, check_type
from vitlib._runtime import is_quantized
from vitlib.checkpoints.adapt import adapt_state, load_strict
from vitlib.checkpoints.families import (
    FAMILIES,
    SAVE_FORMATS,
    convert_state_dict,
    export_state_dict,
)
from vitlib.checkpoints.metadata import adapt_metadata, attach_metadata, model_metadata
from vitlib.checkpoints.precedence import ConfigSources, resolve_configs
from vitlib.checkpoints.shapes import ShapeFacts
from vitlib.checkpoints.sources import check_tensors, read_source, recorded_metadata
from vitlib.checkpoints.weights import write_checkpoint_files
from vitlib.config import check_field_names
from vitlib.errors import CheckpointError
from vitlib.files import write_files
from vitlib.vit import ViT

__all__ = ["checkpoint_contents", "load_pretrained", "save_pretrained"]


def save_pretrained(
    model: ViT,
    directory: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    format: str = "vitlib",
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory``.

    ``config.json`` holds the architecture and what
    [`attach_metadata`][vitlib.attach_metadata] recorded (class names,
    preprocessing). ``format`` is one of [`SAVE_FORMATS`][vitlib.checkpoints.families.SAVE_FORMATS]:
    ``"huggingface"`` writes a folder that ``transformers`` reads as is (with ``id2label`` and,
    where Hugging Face can express it, ``preprocessor_config.json``). The files replace their
    namesakes at once ([`vitlib.files`][vitlib.files]): an interrupted save leaves the old
    checkpoint or the new one, never a mix, and other files are never touched (docs/reliability.md).

    Raises:
        FileExistsError: ``directory`` is not empty and ``overwrite`` is False (nothing is
            written; nothing the user has is replaced silently).
        NotADirectoryError: ``directory`` is a file.
        PermissionError: ``directory`` cannot be created or written.
    """
    tensors, files = checkpoint_contents(model, format)  # before any file: may refuse the model
    return write_files(
        directory,
        lambda staging: write_checkpoint_files(staging, tensors, files),
        overwrite=overwrite,
    )


def checkpoint_contents(
    model: ViT, format: str = "vitlib"
) -> tuple[dict[str, Tensor], dict[str, dict[str, Any]]]:
    """The tensors and the JSON files (by name) that
    [`save_pretrained`][vitlib.checkpoints.save_pretrained] writes in ``format``.

    Raises:
        InputTypeError: ``model`` is not a ViT.
        ConfigError: ``format`` is not one of ``SAVE_FORMATS``.
        CheckpointError: The family cannot express the model, its head is not a linear layer
            (nor none), or it is int8-quantised.
    """
    check_type("model", model, ViT, "a vitlib.ViT")
    if is_quantized(model):
        raise CheckpointError(
            "the model is int8-quantised (optimize_for_inference(model, 'int8')): its packed int8 "
            "weights fit no checkpoint format. Save the float32 model it was made from, and "
            "quantise again after loading."
        )
    if not isinstance(model.head, (nn.Linear, nn.Identity)):
        raise CheckpointError(
            f"model.head is a {type(model.head).__name__}; a vitlib checkpoint records a linear "
            "head (nn.Linear(model.config.num_features, classes)) or none (nn.Identity()). Keep "
            "the extra layers outside the ViT (nn.Sequential(vit, your_head)), or save the "
            "weights alone with safetensors.torch.save_model(model, path)."
        )
    config_format = FAMILIES[check_choice("format", format, SAVE_FORMATS)].config
    if config_format is None or config_format.write is None:  # unreachable: SAVE_FORMATS
        raise ValueError(f"format {format!r} writes no config")
    tensors = export_state_dict(model, format)
    return tensors, config_format.write(model.config, model_metadata(model))


def load_pretrained(
    source: str | os.PathLike[str] | Mapping[str, Tensor] | ViT, **config_overrides: Any
) -> ViT:
    """Load a ViT from any supported checkpoint, optionally changing its config.

    Args:
        source: A directory written by
            [`save_pretrained`][vitlib.checkpoints.save_pretrained] or by Hugging Face's
            ``save_pretrained``; a weights file of any family (``.safetensors``, ``.npz``,
            ``.pth``/``.pt``/``.bin``); a state dict; ``"hf-hub:<repo>"``; ``"torchvision:<name>"``
            (e.g. ``"torchvision:vit_b_16"``) or an ``http(s)`` URL of a weights file; or a
            [`ViT`][vitlib.ViT], to get a copy adapted by the overrides.
        **config_overrides: ``ViTConfig`` fields. ``img_size``, ``num_classes``,
            ``in_channels`` and ``representation_size=None`` adapt the weights (resampled
            position embeddings, a new head, an adapted patch kernel, no pre-logits layer);
            dropouts, pooling, ``layer_norm_eps`` and ``layer_scale_init`` are free;
            ``num_heads`` is for checkpoints that tell none; changing a shape-fixed field is an
            error. docs/pretrained.md has the rules ("Which source wins").

    Returns:
        The model in eval mode (as Hugging Face's ``from_pretrained``; call ``.train()`` to
        train it), with the class names and preprocessing the checkpoint records attached
        ([`model_metadata`][vitlib.model_metadata]; docs/predict.md tells how
        overrides change them).

    Raises:
        CheckpointError: Unreadable or unrecognised files, missing or unexpected keys, shape
            mismatches, conflicting overrides, refused pickles, or class names that are not
            one per output of the checkpoint's head.
    """
    check_field_names(config_overrides, "load_pretrained")
    read = read_source(source)
    check_tensors(read.state)
    converted = convert_state_dict(read.state)
    sources = ConfigSources(
        converted.family,
        ShapeFacts.read(converted.state_dict, converted.family),
        stated=read.stated,
        hints={**converted.hints, **read.hints},
        overrides=config_overrides,
    )
    checkpoint, target = resolve_configs(sources)
    told = {**read.stated, **config_overrides, **sources.tensors.fields()}
    for name, advice in FAMILIES[converted.family].untold.items():
        if name not in told:
            warnings.warn(advice, UserWarning, stacklevel=2)
    metadata = recorded_metadata(read, checkpoint)
    model = ViT.from_config(target)
    load_strict(
        model, adapt_state(dict(converted.state_dict), checkpoint, target), converted.family
    )
    adapted = adapt_metadata(metadata, checkpoint, target)
    attach_metadata(model, labels=adapted.labels, preprocessing=adapted.preprocessing)
    return model.eval()
