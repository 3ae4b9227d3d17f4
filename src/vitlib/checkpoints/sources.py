"""Reading what a checkpoint source holds (its tensors, what its config states and records, what
its name implies), and refusing tensors that would load as wrong weights."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import torch
from torch import Tensor

from vitlib._checks import check_type
from vitlib.checkpoints.families import identify_config
from vitlib.checkpoints.family import ConfigFormat
from vitlib.checkpoints.metadata import (
    ModelMetadata,
    check_labels,
    check_preprocessing,
    model_metadata,
)
from vitlib.checkpoints.run_folder import checkpoint_of_run
from vitlib.checkpoints.weights import CONFIG_FILE, SUPPORTED_SUFFIXES, read_weights
from vitlib.config import ViTConfig
from vitlib.data.preprocessing import Preprocessing
from vitlib.errors import CheckpointError, VitlibError
from vitlib.files import read_json, recover_interrupted_save
from vitlib.vit import ViT

__all__ = [
    "NonFiniteWeightsWarning",
    "RawCheckpoint",
    "check_tensors",
    "read_source",
    "recorded_metadata",
]

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth", "model.npz")
_URL_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


class NonFiniteWeightsWarning(UserWarning):
    """A checkpoint holds NaN or infinite weights; the model will output NaN for some inputs."""


@dataclass(frozen=True)
class ConfigFiles:
    """A checkpoint folder's ``config.json``, its format and the side files beside it.

    Attributes:
        path: The ``config.json``.
        data: Its content.
        format: Its family's format.
        side_files: The format's side files that are present, by name, with their paths.
    """

    path: Path
    data: dict[str, Any]
    format: ConfigFormat
    side_files: dict[str, tuple[Path, dict[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True)
class RawCheckpoint:
    """What a source holds, before conversion.

    Attributes:
        state: Its tensors, under the family's names.
        stated: The ``ViTConfig`` fields its own config states (all of them for a vitlib
            checkpoint or a ``ViT``); empty without a config.
        hints: What its hub name implies (the image size of torchvision's weights).
        config: Its ``config.json`` and side files, if it has them.
        metadata: The class names and preprocessing of a ``ViT`` source.
    """

    state: dict[str, Tensor]
    stated: dict[str, Any] = field(default_factory=dict)
    hints: dict[str, Any] = field(default_factory=dict)
    config: ConfigFiles | None = None
    metadata: ModelMetadata = field(default_factory=ModelMetadata)


def read_source(source: str | os.PathLike[str] | Mapping[str, Tensor] | ViT) -> RawCheckpoint:
    """What ``source`` holds: any source
    [`load_pretrained`][vitlib.checkpoints.load_pretrained] takes, downloaded first for a hub name
    or URL (into the cache).

    Raises:
        CheckpointError: The source is unreadable or of an unsupported kind, or its config is
            invalid.
        FileNotFoundError: Nothing is at a local path.
        InputTypeError: ``source`` is not a path, a hub name, a state dict or a ``ViT``.
    """
    if isinstance(source, ViT):
        state = {key: value.detach().clone() for key, value in source.state_dict().items()}
        return RawCheckpoint(state, stated=source.config.to_dict(), metadata=model_metadata(source))
    if isinstance(source, Mapping):
        return RawCheckpoint(dict(source))
    if isinstance(source, str) and (
        source.startswith(("hf-hub:", "torchvision:", "http://", "https://"))
    ):
        from vitlib.checkpoints.hub import resolve

        path, hub_hints = resolve(source)
        return replace(_read_path(path), hints=hub_hints)
    if isinstance(source, str) and (scheme := _URL_SCHEME.match(source)):
        raise CheckpointError(
            f"cannot load {source!r}: {scheme.group(1)!r} URLs are not supported; expected an "
            f"http(s) URL of a weights file, 'hf-hub:<owner>/<name>', 'torchvision:<name>' or a "
            f"local path (download the file first)."
        )
    check_type("source", source, (str, os.PathLike), "a path, a hub name, a state dict or a ViT")
    return _read_path(Path(source))


def _read_path(path: Path) -> RawCheckpoint:
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; check the path.")
    if not path.is_dir():
        return RawCheckpoint(read_weights(path))
    path = checkpoint_of_run(path) or path
    recover_interrupted_save(path)
    weights = read_weights(_weights_file(path))
    config_path = path / CONFIG_FILE
    if not config_path.exists():
        return RawCheckpoint(weights)
    data = read_json(config_path)
    try:
        config_format, stated = identify_config(data)
    except (VitlibError, TypeError, ValueError) as error:
        raise CheckpointError(f"{config_path} is not a valid model config: {error}") from error
    side_files = {
        name: (path / name, read_json(path / name))
        for name in config_format.side_files
        if (path / name).exists()
    }
    files = ConfigFiles(config_path, data, config_format, side_files)
    return RawCheckpoint(weights, stated=stated, config=files)


def _weights_file(folder: Path) -> Path:
    """The weights file of a checkpoint folder: the first of ``_WEIGHT_FILES`` present
    (safetensors first, as Hugging Face prefers), else the only file with a weights suffix."""
    for name in _WEIGHT_FILES:
        if (folder / name).exists():
            return folder / name
    candidates = sorted(
        entry
        for entry in folder.iterdir()
        if entry.suffix.lower() in SUPPORTED_SUFFIXES and not entry.name.startswith(".")
    )
    if len(candidates) != 1:
        found = [entry.name for entry in candidates] or "none"
        raise CheckpointError(
            f"expected one weights file in {folder}: one of {', '.join(_WEIGHT_FILES)}, or a "
            f"single file ending in {', '.join(SUPPORTED_SUFFIXES)}; found {found}. Load the "
            f"file you mean by its path."
        )
    return candidates[0]


# How to repair a checkpoint whose recorded class names or preprocessing are wrong.
_FIX: Final = (
    "Fix or remove that entry of the file; after loading, record the right ones with "
    "vitlib.attach_metadata(model, labels=[...], preprocessing=...) and re-save."
)


def recorded_metadata(raw: RawCheckpoint, config: ViTConfig) -> ModelMetadata:
    """The class names and preprocessing ``raw`` records, checked against its model ``config``.

    What is wrong is named with its file and field, once, here. Labels that are not one
    distinct name per output are refused in any family; a preprocessing that vitlib cannot use
    (malformed, or not the model's input size and channels) is refused in a vitlib
    ``config.json`` and left out with a warning for another family's files, which may hold
    settings vitlib does not have.

    Raises:
        CheckpointError: Malformed labels, or a vitlib ``config.json``'s unusable preprocessing.
    """
    files = raw.config
    if files is None:
        return raw.metadata
    labels = _recorded_labels(files, config)
    spec: Preprocessing | None = None
    side = {name: content for name, (_, content) in files.side_files.items()}
    name = files.format.preprocessing_file
    where = files.side_files[name][0] if name in files.side_files else files.path
    try:
        fields = files.format.read_preprocessing(files.data, side, config)
        if fields is not None:
            spec = Preprocessing.from_dict(fields)
            check_preprocessing(spec, config)
    except (VitlibError, TypeError, ValueError) as error:
        if files.data.get("format") == "vitlib":
            raise CheckpointError(
                f"{where}: its preprocessing is unusable: {error} {_FIX}"
            ) from error
        warnings.warn(
            f"{where}: its preprocessing cannot be used ({error}); it is ignored, and predict "
            "assumes ImageNet's (pass preprocessing=... to override).",
            UserWarning,
            stacklevel=4,
        )
        spec = None
    return ModelMetadata(labels, spec)


def _recorded_labels(files: ConfigFiles, config: ViTConfig) -> tuple[str, ...] | None:
    try:
        labels = files.format.read_labels(files.data)
        if labels is None or config.num_classes == 0:  # a feature extractor: no head to name
            return None
        check_labels(labels, config.num_classes)
    except (VitlibError, TypeError, ValueError) as error:
        raise CheckpointError(f"{files.path}: {error} {_FIX}") from error
    return tuple(labels)


def check_tensors(state: Mapping[str, Any]) -> None:
    """Refuse non-tensor and non-floating values; warn about NaN or infinite weights."""
    not_tensors = [key for key, value in state.items() if not isinstance(value, Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"the checkpoint's entries {not_tensors[:5]} are not tensors; expected a state dict "
            f"of name -> torch.Tensor (model.state_dict())."
        )
    not_float = {
        key: str(value.dtype).removeprefix("torch.")
        for key, value in state.items()
        if not value.is_floating_point()
    }
    if not_float:
        named = ", ".join(f"{key} ({dtype})" for key, dtype in list(not_float.items())[:5])
        raise CheckpointError(
            f"the checkpoint holds {len(not_float)} tensor(s) that are not real floating point: "
            f"{named}{' ...' if len(not_float) > 5 else ''}; ViT weights are float32, float16, "
            f"bfloat16 or float64. Integer, bool or complex values would be cast silently into "
            f"wrong weights; re-export the float weights."
        )
    non_finite = [key for key, value in state.items() if not bool(torch.isfinite(value).all())]
    if non_finite:
        warnings.warn(
            f"the checkpoint holds NaN or infinite values in {len(non_finite)} tensor(s): "
            f"{non_finite[:5]}{' ...' if len(non_finite) > 5 else ''}; the model will output NaN. "
            f"The file is damaged or the training diverged; use an earlier checkpoint.",
            NonFiniteWeightsWarning,
            stacklevel=3,
        )
