"""Checkpoints: vitlib's own format and every ViT family people have, with proven parity.

One small module per foreign family maps its state dict to vitlib's layout (and back, for timm
and Hugging Face); [`load_pretrained`][vitlib.checkpoints.load_pretrained] detects the family,
infers the config from the tensor shapes, adapts resolution, classes and channels on request, and
loads without unpickling.
"""

from __future__ import annotations

from vitlib.checkpoints.adapt import AdaptedCheckpointWarning, adapt_input_channels
from vitlib.checkpoints.families import (
    FAMILIES,
    SAVE_FORMATS,
    convert_state_dict,
    detect_family,
    export_state_dict,
)
from vitlib.checkpoints.family import ConfigFormat, Family
from vitlib.checkpoints.metadata import ModelMetadata, attach_metadata, model_metadata
from vitlib.checkpoints.pretrained import load_pretrained, save_pretrained
from vitlib.checkpoints.sources import NonFiniteWeightsWarning
from vitlib.checkpoints.weights import read_weights

__all__ = [
    "FAMILIES",
    "SAVE_FORMATS",
    "AdaptedCheckpointWarning",
    "ConfigFormat",
    "Family",
    "ModelMetadata",
    "NonFiniteWeightsWarning",
    "adapt_input_channels",
    "attach_metadata",
    "convert_state_dict",
    "detect_family",
    "export_state_dict",
    "load_pretrained",
    "model_metadata",
    "read_weights",
    "save_pretrained",
]
