"""Reading what a checkpoint source holds (its tensors, what its config states, what its name
implies), and refusing tensors that would load as wrong weights."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vitlib.checkpoints.atomic import recover_interrupted_save
from vitlib.checkpoints.families import read_config
from vitlib.checkpoints.files import CONFIG_FILE, SUPPORTED_SUFFIXES, read_json, read_weights
from vitlib.checkpoints.metadata import ModelMetadata, model_metadata
from vitlib.checkpoints.vitlib_layout import check_format_version
from vitlib.errors import CheckpointError
from vitlib.vit import ViT

__all__ = ["NonFiniteWeightsWarning", "RawCheckpoint", "check_tensors", "read_source"]

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth", "model.npz")
#: Hugging Face's image-processor settings, read beside a ``config.json`` when present.
PREPROCESSOR_FILE = "preprocessor_config.json"
# The folders of a run directory (vitlib.training.fit), the one to load first.
_RUN_BEST, _RUN_LAST = "best", "last"


class NonFiniteWeightsWarning(UserWarning):
    """A checkpoint holds NaN or infinite weights; the model will output NaN for some inputs."""


_URL_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


@dataclass(frozen=True)
class RawCheckpoint:
    """What a source holds, before conversion.

    Attributes:
        state: Its tensors, under the family's names.
        stated: The ``ViTConfig`` fields its own config states (all of them for a vitlib
            checkpoint or a ``ViT``); empty without a config.
        hints: What its hub name implies (the image size of torchvision's weights).
        config_json: Its ``config.json``, read for class names and preprocessing.
        preprocessor_json: Hugging Face's ``preprocessor_config.json`` beside it, if any.
        metadata: The class names and preprocessing of a ``ViT`` source.
    """

    state: dict[str, Tensor]
    stated: dict[str, Any] = field(default_factory=dict)
    hints: dict[str, Any] = field(default_factory=dict)
    config_json: dict[str, Any] | None = None
    preprocessor_json: dict[str, Any] | None = None
    metadata: ModelMetadata = field(default_factory=ModelMetadata)


def read_source(source: str | os.PathLike[str] | Mapping[str, Tensor] | ViT) -> RawCheckpoint:
    """What ``source`` holds: any source
    [`load_pretrained`][vitlib.checkpoints.load_pretrained] takes, downloaded first for a hub name
    or URL (into the cache).

    Raises:
        CheckpointError: The source is unreadable or of an unsupported kind, or its config is
            invalid.
        FileNotFoundError: Nothing is at a local path.
        TypeError: ``source`` is not a path, a hub name, a state dict or a ``ViT``.
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
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            f"source must be a path, a hub name or a state dict, got {type(source).__name__}."
        )
    return _read_path(Path(source))


def _read_path(path: Path) -> RawCheckpoint:
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; check the path.")
    if not path.is_dir():
        return RawCheckpoint(read_weights(path))
    path = _model_folder(path)
    recover_interrupted_save(path)
    config_path = path / CONFIG_FILE
    if not config_path.exists():
        return RawCheckpoint(read_weights(_weights_file(path)))
    config_json = read_json(config_path)
    preprocessor_path = path / PREPROCESSOR_FILE
    preprocessor = read_json(preprocessor_path) if preprocessor_path.exists() else None
    return RawCheckpoint(
        read_weights(_weights_file(path)),
        stated=_stated_config(config_json, config_path),
        config_json=config_json,
        preprocessor_json=preprocessor,
    )


def _model_folder(path: Path) -> Path:
    """``path``, or its ``best/`` if it is the run directory of ``fit`` (no checkpoint of its
    own, a ``best/`` checkpoint inside).

    Raises:
        CheckpointError: A run directory without ``best/``; the message names the folders to
            load instead.
    """
    if (path / CONFIG_FILE).exists() or any((path / name).exists() for name in _WEIGHT_FILES):
        return path
    best, last = path / _RUN_BEST, path / _RUN_LAST
    if (best / CONFIG_FILE).is_file() or (best / "model.safetensors").is_file():
        return best
    if last.is_dir():
        raise CheckpointError(
            f"{path} is a training run without a {_RUN_BEST}/ checkpoint (the model with the best "
            f"test accuracy); load {last} (the latest epoch) by its path."
        )
    return path


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


def _stated_config(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """The ``ViTConfig`` fields the ``config.json`` at ``path`` states (read by its family)."""
    if data.get("format") == "vitlib":
        try:
            check_format_version(data.get("format_version", 1))
        except CheckpointError as error:
            raise CheckpointError(f"cannot load {path}: {error}.") from None
    try:
        stated = read_config(data)
    except (CheckpointError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} is not a valid model config: {error}") from error
    if stated is None:
        raise CheckpointError(
            f"{path} is not a vitlib, Hugging Face or timm config (no 'format', 'model_type' or "
            f"'architecture' key)."
        )
    return stated


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
