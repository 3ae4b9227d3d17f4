"""vitlib's own state-dict layout as a "family": nothing to convert, and its ``config.json``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from torch import Tensor

from vitlib._version import __version__
from vitlib.checkpoints import keys as slots
from vitlib.checkpoints.family import ConfigFormat, Converted, Family
from vitlib.checkpoints.metadata import ModelMetadata
from vitlib.checkpoints.weights import CONFIG_FILE
from vitlib.config import ViTConfig
from vitlib.errors import CheckpointError

__all__ = [
    "FAMILY",
    "FORMAT_VERSION",
    "from_vitlib",
    "matches",
    "read_config",
    "read_labels",
    "read_preprocessing",
    "to_vitlib",
    "write",
]

NAME = "vitlib"
#: The ``format_version`` that ``save_pretrained`` writes: 2 adds ``labels`` and
#: ``preprocessing`` to version 1 (architecture only), which is still read.
FORMAT_VERSION: Final = 2


def matches(keys: set[str]) -> bool:
    """Whether ``keys`` are vitlib's own layout."""
    return slots.PATCH.key("weight") in keys and any(slots.QKV.owns(key) for key in keys)


def to_vitlib(state: Mapping[str, Tensor]) -> Converted:
    """vitlib's layout needs no conversion."""
    return Converted(NAME, dict(state))


def from_vitlib(state: Mapping[str, Tensor], config: ViTConfig) -> dict[str, Tensor]:
    """vitlib's layout needs no conversion (``config`` is not needed)."""
    return dict(state)


def read_config(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """Every ``ViTConfig`` field, from a ``config.json`` written by ``save_pretrained`` (None for
    any other JSON)."""
    if data.get("format") != "vitlib":
        return None
    check_format_version(data.get("format_version", 1))
    saved = data.get("config")
    if not isinstance(saved, dict):
        raise CheckpointError(
            f"its 'config' must be a JSON object of ViTConfig fields, got {type(saved).__name__}"
        )
    return ViTConfig.from_dict(saved).to_dict()


def check_format_version(version: object) -> None:
    """Refuse a ``config.json`` of a newer (or no valid) vitlib format version.

    Raises:
        CheckpointError: ``version`` is not an int from 1 to ``FORMAT_VERSION``.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(
            f"its format_version is {version!r}; expected an integer from 1 to {FORMAT_VERSION}"
        )
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"it has format_version {version}, written by a newer vitlib; this vitlib "
            f"({__version__}) reads format_version 1 to {FORMAT_VERSION}. Upgrade vitlib "
            "(pip install -U vitlib) to load it"
        )


def read_labels(data: Mapping[str, Any]) -> Any:
    """The ``labels`` of a ``config.json`` of format version 2 (version 1 has none)."""
    return data.get("labels")


def read_preprocessing(
    data: Mapping[str, Any], side_files: Mapping[str, Mapping[str, Any]], config: ViTConfig
) -> Any:
    """The ``preprocessing`` of a ``config.json`` of format version 2 (version 1 has none)."""
    return data.get("preprocessing")


def write(config: ViTConfig, metadata: ModelMetadata) -> dict[str, dict[str, Any]]:
    """The ``config.json`` of ``save_pretrained``: the architecture, the class names and the
    preprocessing (what is unknown is left out)."""
    data: dict[str, Any] = {
        "format": NAME,
        "format_version": FORMAT_VERSION,
        "vitlib_version": __version__,
        "config": config.to_dict(),
    }
    if metadata.labels is not None:
        data["labels"] = list(metadata.labels)
    if metadata.preprocessing is not None:
        data["preprocessing"] = metadata.preprocessing.to_dict()
    return {CONFIG_FILE: data}


FAMILY: Final = Family(
    NAME,
    "vitlib",
    matches,
    to_vitlib,
    from_vitlib,
    ConfigFormat("'format': 'vitlib'", read_config, read_labels, read_preprocessing, write=write),
)
