"""What a trained model carries besides its weights: class names and input preprocessing.

[`ModelMetadata`][vitlib.checkpoints.metadata.ModelMetadata] travels with a
[`ViT`][vitlib.ViT]: [`attach_metadata`][vitlib.attach_metadata] sets it,
``save_pretrained`` and ``fit`` write it into ``config.json`` and ``load_pretrained`` reads it
back (also from other families' configs), so that [`vitlib.predict`][vitlib.predict] needs
nothing but the checkpoint; docs/predict.md says more.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from torch import nn

from vitlib._checks import check_sequence, check_type
from vitlib.config import ViTConfig
from vitlib.data.preprocessing import Preprocessing
from vitlib.errors import ConfigError, DataError, InputTypeError

__all__ = [
    "ModelMetadata",
    "adapt_metadata",
    "attach_metadata",
    "check_labels",
    "check_preprocessing",
    "default_preprocessing",
    "model_metadata",
]

_ATTRIBUTE: Final = "vitlib_metadata"


@dataclass(frozen=True)
class ModelMetadata:
    """Class names and preprocessing of a model; either may be unknown (``None``).

    Attributes:
        labels: The name of each output class, in head order.
        preprocessing: How the model's input images are made.
    """

    labels: tuple[str, ...] | None = None
    preprocessing: Preprocessing | None = None


def check_labels(labels: object, num_classes: int | None = None, *, where: str = "labels") -> None:
    """Refuse labels that are not distinct non-empty strings, one per class.

    Two names that differ only in their Unicode form (``"é"`` composed or as ``"e"`` and an
    accent) are the same name: they look alike in every listing and file name.

    Raises:
        InputTypeError: ``labels`` is not a sequence of non-empty strings.
        ConfigError: Repeated names, or not one per class.
    """
    names = check_sequence(where, labels, "a list of class names, e.g. ['cat', 'dog']")
    bad = [label for label in names if not isinstance(label, str) or not label]
    if bad:
        raise InputTypeError(f"{where} must be non-empty strings, got {bad[:3]!r} among them.")
    seen: dict[str, str] = {}
    repeated = []
    for label in names:
        normal = unicodedata.normalize("NFC", str(label))
        if normal in seen:
            repeated.append(label if seen[normal] == label else f"{seen[normal]!r}/{label!r}")
        seen.setdefault(normal, str(label))
    if repeated:
        raise ConfigError(
            f"{where} repeat {repeated[:3]}; expected one distinct name per class (names equal "
            "in Unicode NFC form count as one)."
        )
    if num_classes is not None and len(names) != num_classes:
        raise ConfigError(
            f"{where} name {len(names)} classes but the model's head has {num_classes} outputs; "
            "expected one name per output. Pass the class names of the data the head was "
            "trained on."
        )


def check_preprocessing(preprocessing: Preprocessing, config: ViTConfig) -> None:
    """Refuse a preprocessing that does not make the images a model of ``config`` takes.

    Its channels must be the model's; its image size the model's input size, or, for a model
    with ``dynamic_img_size``, a multiple of the patch size.

    Raises:
        ConfigError: Another number of channels or an image size the model does not take; the
            message names both and the fix.
    """
    height, width = preprocessing.image_size
    if preprocessing.channels != config.in_channels:
        raise ConfigError(
            f"the preprocessing makes {preprocessing.channels}-channel images but the model "
            f"takes {config.in_channels} channels (in_channels); expected a preprocessing with "
            f"channels={config.in_channels}."
        )
    if config.dynamic_img_size:
        patch_height, patch_width = config.patch_hw
        if height % patch_height == 0 and width % patch_width == 0:
            return
        wanted = f"a multiple of the patch size {patch_height}x{patch_width}"
    elif (height, width) == config.image_hw:
        return
    else:
        wanted = f"{config.image_hw[0]}x{config.image_hw[1]} images"
    raise ConfigError(
        f"the preprocessing makes {height}x{width} images but the model takes {wanted}; "
        f"expected a preprocessing with image_size={config.image_hw}."
    )


def attach_metadata(
    model: nn.Module,
    *,
    labels: Sequence[str] | None = None,
    preprocessing: Preprocessing | None = None,
) -> None:
    """Record ``model``'s class names and preprocessing, for ``save_pretrained`` and ``predict``.

    Args:
        model: A [`ViT`][vitlib.ViT] (any module is accepted; only a ViT's saves record it).
        labels: The name of each output class, in head order; ``None`` keeps what is recorded.
        preprocessing: How its input images are made; ``None`` keeps what is recorded.

    Raises:
        TypeError: ``labels`` is not a list of strings, or ``preprocessing`` not a
            ``Preprocessing``.
        ValueError: ``labels`` are repeated, or not one per output of the model's head; or
            ``preprocessing`` does not make the images the model takes (size, channels).
    """
    check_type("model", model, nn.Module, "a vitlib.ViT (or another torch module)")
    config = getattr(model, "config", None)
    config = config if isinstance(config, ViTConfig) else None
    if labels is not None:
        check_labels(labels, None if config is None else config.num_classes)
    if preprocessing is not None:
        check_type("preprocessing", preprocessing, Preprocessing, "a vitlib.data.Preprocessing")
        if config is not None:
            check_preprocessing(preprocessing, config)
    current = _recorded(model)
    updated = ModelMetadata(
        tuple(labels) if labels is not None else current.labels,
        preprocessing if preprocessing is not None else current.preprocessing,
    )
    setattr(model, _ATTRIBUTE, updated)  # a plain attribute: not in the state dict


def model_metadata(model: nn.Module) -> ModelMetadata:
    """What [`attach_metadata`][vitlib.attach_metadata] or ``load_pretrained``
    recorded on ``model`` (empty ``ModelMetadata()`` if nothing), checked against the model as
    it is now.

    Raises:
        ConfigError: The recorded class names or preprocessing no longer fit the model (its
            head or input was replaced after they were recorded); the message says how to
            record new ones.
    """
    metadata = _recorded(model)
    config = getattr(model, "config", None)
    if not isinstance(config, ViTConfig):
        return metadata
    labels = metadata.labels
    if labels is not None and len(labels) != config.num_classes:
        raise ConfigError(
            f"the model records {len(labels)} class names but its head has "
            f"{config.num_classes} outputs (the head was replaced after they were recorded); "
            "record the new head's names with vitlib.attach_metadata(model, labels=[...])."
        )
    if metadata.preprocessing is not None:
        try:
            check_preprocessing(metadata.preprocessing, config)
        except ConfigError as error:
            raise ConfigError(
                f"{error} (The model's input changed after its preprocessing was recorded; "
                "record the new one with vitlib.attach_metadata(model, preprocessing=...).)"
            ) from error
    return metadata


def _recorded(model: nn.Module) -> ModelMetadata:
    found = getattr(model, _ATTRIBUTE, None)
    return found if isinstance(found, ModelMetadata) else ModelMetadata()


def default_preprocessing(config: ViTConfig) -> Preprocessing:
    """What ``predict`` assumes for a model whose checkpoint records no preprocessing: its input
    size, ImageNet's mean and std (0.5 for grey) and the standard 0.875 centre crop."""
    if config.in_channels == 3:
        return Preprocessing(image_size=config.image_hw)
    if config.in_channels == 1:
        return Preprocessing(image_size=config.image_hw, channels=1, mean=(0.5,), std=(0.5,))
    raise DataError(
        f"the model takes {config.in_channels}-channel images, which vitlib cannot make from "
        "photos (1 or 3 channels); pass preprocessed tensors to the model itself."
    )


def adapt_metadata(
    metadata: ModelMetadata, checkpoint: ViTConfig, model: ViTConfig
) -> ModelMetadata:
    """``metadata`` of a checkpoint, for the model built from it with adapted fields.

    A new head (another ``num_classes``) drops the labels; another image size keeps the rest of
    the preprocessing at the new size; other input channels drop the preprocessing (its mean
    and std no longer fit).
    """
    labels = metadata.labels if model.num_classes == checkpoint.num_classes else None
    preprocessing = metadata.preprocessing
    if preprocessing is not None:
        if model.in_channels != checkpoint.in_channels:
            preprocessing = None
        elif model.image_hw != checkpoint.image_hw:
            preprocessing = replace(preprocessing, image_size=model.image_hw)
    return ModelMetadata(labels, preprocessing)
