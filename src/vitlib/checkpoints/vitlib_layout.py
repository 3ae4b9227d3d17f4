"""vitlib's own state-dict layout as a "family": nothing to convert, either way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from torch import Tensor

from ..config import ViTConfig
from . import _slots as slots
from ._mapping import Converted, Family

__all__ = ["FAMILY", "from_vitlib", "matches", "to_vitlib"]

NAME = "vitlib"


def matches(keys: set[str]) -> bool:
    """Whether ``keys`` are vitlib's own layout."""
    return slots.PATCH.key("weight") in keys and any(slots.QKV.owns(key) for key in keys)


def to_vitlib(state: Mapping[str, Tensor]) -> Converted:
    """vitlib's layout needs no conversion."""
    return Converted(NAME, dict(state))


def from_vitlib(state: Mapping[str, Tensor], config: ViTConfig) -> dict[str, Tensor]:
    """vitlib's layout needs no conversion (``config`` is not needed)."""
    return dict(state)


FAMILY: Final = Family(NAME, matches, to_vitlib, from_vitlib)
