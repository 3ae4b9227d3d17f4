"""What a trained model carries besides its weights: class names and input preprocessing.

[`ModelMetadata`][vitlib.checkpoints.metadata.ModelMetadata] travels with a
[`ViT`][vitlib.ViT]: [`attach_metadata`][vitlib.checkpoints.attach_metadata] sets it
(``vitlib train`` and ``vitlib finetune`` do), [`save_pretrained`][vitlib.save_pretrained] and
the run directories of [`fit`][vitlib.training.fit] write it into ``config.json``, and
[`load_pretrained`][vitlib.load_pretrained] reads it back (also from Hugging Face's
``id2label`` and timm's ``label_names`` and ``pretrained_cfg``), so that
[`vitlib.predict`][vitlib.predict] needs nothing but the checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from torch import nn

from vitlib.checkpoints import huggingface, timm
from vitlib.config import ViTConfig
from vitlib.data.preprocessing import Preprocessing
from vitlib.errors import CheckpointError, DataError

__all__ = [
    "ModelMetadata",
    "adapt_metadata",
    "attach_metadata",
    "check_labels",
    "default_preprocessing",
    "model_metadata",
    "read_metadata",
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

    Raises:
        TypeError: ``labels`` is not a sequence of strings.
        ValueError: Empty, repeated or wrongly counted names.
    """
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
        raise TypeError(
            f"{where} must be a list of class names, got {type(labels).__name__}; "
            "e.g. ['cat', 'dog']."
        )
    bad = [label for label in labels if not isinstance(label, str) or not label]
    if bad:
        raise TypeError(f"{where} must be non-empty strings, got {bad[:3]!r} among them.")
    repeated = sorted({label for label in labels if list(labels).count(label) > 1})
    if repeated:
        raise ValueError(f"{where} repeat {repeated[:3]}; expected one distinct name per class.")
    if num_classes is not None and len(labels) != num_classes:
        raise ValueError(
            f"{where} name {len(labels)} classes but the model's head has {num_classes} outputs; "
            "expected one name per output. Pass the class names of the data the head was "
            "trained on."
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
        ValueError: ``labels`` are repeated, or not one per output of the model's head.
    """
    num_classes = getattr(getattr(model, "config", None), "num_classes", None)
    if labels is not None:
        check_labels(labels, num_classes if isinstance(num_classes, int) else None)
    if preprocessing is not None and not isinstance(preprocessing, Preprocessing):
        raise TypeError(
            f"preprocessing must be a vitlib.data.Preprocessing, got "
            f"{type(preprocessing).__name__}."
        )
    current = model_metadata(model)
    updated = ModelMetadata(
        tuple(labels) if labels is not None else current.labels,
        preprocessing if preprocessing is not None else current.preprocessing,
    )
    setattr(model, _ATTRIBUTE, updated)  # a plain attribute: not in the state dict


def model_metadata(model: nn.Module) -> ModelMetadata:
    """What [`attach_metadata`][vitlib.checkpoints.attach_metadata] or ``load_pretrained``
    recorded on ``model`` (empty ``ModelMetadata()`` if nothing)."""
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


def metadata_to_json(metadata: ModelMetadata) -> dict[str, Any]:
    """The ``config.json`` entries of ``metadata`` (none for what is unknown)."""
    entries: dict[str, Any] = {}
    if metadata.labels is not None:
        entries["labels"] = list(metadata.labels)
    if metadata.preprocessing is not None:
        entries["preprocessing"] = metadata.preprocessing.to_dict()
    return entries


def read_metadata(
    config_json: Mapping[str, Any],
    config: ViTConfig,
    preprocessor_json: Mapping[str, Any] | None = None,
) -> ModelMetadata:
    """The class names and preprocessing a checkpoint's ``config.json`` records.

    vitlib's own ``labels`` and ``preprocessing`` (format version 2; version 1 has neither);
    Hugging Face's ``id2label`` and, from ``preprocessor_config.json``, its
    ``ViTImageProcessor`` settings; timm's ``label_names`` and ``pretrained_cfg``.

    Args:
        config_json: The checkpoint's ``config.json``.
        config: The checkpoint's architecture (its head fixes how many labels there must be).
        preprocessor_json: Hugging Face's ``preprocessor_config.json`` beside it, if any.

    Raises:
        CheckpointError: The labels are malformed or not one per output of the head, or
            vitlib's own ``preprocessing`` entry is malformed.
    """
    labels: Any = None
    preprocessing: Preprocessing | None = None
    if config_json.get("format") == "vitlib":
        labels = config_json.get("labels")
        if config_json.get("preprocessing") is not None:
            try:
                preprocessing = Preprocessing.from_dict(config_json["preprocessing"])
            except DataError as error:
                raise CheckpointError(f"its 'preprocessing' is invalid: {error}") from error
    elif config_json.get("model_type") == "vit":
        labels = huggingface.labels_from_hf(config_json)
        if preprocessor_json is not None:
            found = huggingface.preprocessing_from_hf(preprocessor_json, config.in_channels)
            preprocessing = _foreign_preprocessing(found)
    elif "architecture" in config_json:
        labels = timm.labels_from_timm(config_json)
        preprocessing = _foreign_preprocessing(timm.preprocessing_from_timm(config_json))
    if labels is not None:
        if config.num_classes == 0:
            labels = None  # a feature extractor: its names belong to a head it no longer has
        else:
            try:
                check_labels(labels, config.num_classes, where="its labels")
            except (TypeError, ValueError) as error:
                raise CheckpointError(str(error)) from error
    return ModelMetadata(tuple(labels) if labels is not None else None, preprocessing)


def _foreign_preprocessing(fields: dict[str, Any] | None) -> Preprocessing | None:
    """A foreign family's settings as ``Preprocessing``; None where vitlib cannot express them
    (the weights load all the same; ``predict`` then says what it assumes)."""
    if fields is None:
        return None
    try:
        return Preprocessing.from_dict(fields)
    except DataError:
        return None
