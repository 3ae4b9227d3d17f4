"""The checkpoint families, in one registry: detect a state dict's family, convert it both ways,
read a family's ``config.json``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

from torch import Tensor

from vitlib.checkpoints import (
    google_npz,
    huggingface,
    learnpytorch,
    timm,
    torchvision,
    vitlib_layout,
)
from vitlib.checkpoints._mapping import Converted, Family
from vitlib.errors import CheckpointError
from vitlib.vit import ViT

__all__ = [
    "FAMILIES",
    "ExportFamily",
    "convert_state_dict",
    "detect_family",
    "export_state_dict",
    "read_config",
]

#: Every family by name, in detection order: each module holds its table, its converters and
#: (where it has one) its ``config.json`` reader.
FAMILIES: Final[dict[str, Family]] = {
    family.name: family
    for family in (
        learnpytorch.FAMILY,
        vitlib_layout.FAMILY,
        timm.FAMILY,
        torchvision.FAMILY,
        huggingface.FAMILY,
        google_npz.FAMILY,
    )
}
#: The families [`export_state_dict`][vitlib.checkpoints.export_state_dict] writes.
ExportFamily = Literal["vitlib", "timm", "huggingface"]


def detect_family(keys: set[str] | Mapping[str, Any]) -> str:
    """Name the family of a state dict from its keys (the first of ``FAMILIES`` that matches).

    Raises:
        CheckpointError: No family matches; the message shows some keys and the families known.
    """
    names = set(keys)
    for family in FAMILIES.values():
        if family.matches(names):
            return family.name
    sample = sorted(names)[:8]
    raise CheckpointError(
        f"unrecognised checkpoint format: none of the known families ({', '.join(FAMILIES)}) "
        f"matches keys such as {sample}. vitlib reads ViT checkpoints of those families only."
    )


def convert_state_dict(state: Mapping[str, Tensor], family: str | None = None) -> Converted:
    """Convert a foreign state dict to vitlib's layout (``family`` detected when None)."""
    name = family or detect_family(state)
    if name not in FAMILIES:
        raise CheckpointError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}.")
    return FAMILIES[name].to_vitlib(state)


def read_config(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``ViTConfig`` fields a ``config.json`` states, read by the first family whose config
    it is; None when it is no family's.

    Raises:
        CheckpointError, TypeError, ValueError: The family's config holds an invalid value.
    """
    for family in FAMILIES.values():
        if family.read_config is not None and (stated := family.read_config(data)) is not None:
            return stated
    return None


def export_state_dict(model: ViT, family: ExportFamily = "timm") -> dict[str, Tensor]:
    """``model``'s weights under another family's names (``"timm"`` or ``"huggingface"``).

    Loading the result into the peer's model of the same architecture gives the same outputs;
    converting it back with [`convert_state_dict`][vitlib.checkpoints.convert_state_dict] gives
    ``model.state_dict()`` exactly.
    """
    entry = FAMILIES.get(family)
    if entry is None or entry.from_vitlib is None:
        choices = [repr(name) for name in get_args(ExportFamily)]
        raise CheckpointError(
            f"cannot export to {family!r}; choose {', '.join(choices[:-1])} or {choices[-1]}."
        )
    state = {key: value.detach() for key, value in model.state_dict().items()}
    return entry.from_vitlib(state, model.config)
