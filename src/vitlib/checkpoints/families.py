"""The checkpoint families, in one registry: detect a state dict's family, convert it both ways,
read and write a family's ``config.json`` and side files. Everything of a family is in its
module's ``FAMILY``; this module only looks them up."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from torch import Tensor

from vitlib._checks import check_choice
from vitlib.checkpoints import (
    google_npz,
    huggingface,
    learnpytorch,
    timm,
    torchvision,
    vitlib_layout,
)
from vitlib.checkpoints.family import ConfigFormat, Converted, Family
from vitlib.errors import CheckpointError
from vitlib.vit import ViT

__all__ = [
    "FAMILIES",
    "SAVE_FORMATS",
    "convert_state_dict",
    "detect_family",
    "export_state_dict",
    "identify_config",
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
#: The formats [`save_pretrained`][vitlib.save_pretrained] writes: the families with a
#: ``config.json`` writer and an export of their weights.
SAVE_FORMATS: Final[tuple[str, ...]] = tuple(
    name
    for name, family in FAMILIES.items()
    if family.from_vitlib is not None and family.config is not None and family.config.write
)


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
    name = (
        detect_family(state) if family is None else check_choice("family", family, list(FAMILIES))
    )
    return FAMILIES[name].to_vitlib(state)


def identify_config(data: Mapping[str, Any]) -> tuple[ConfigFormat, dict[str, Any]]:
    """The format of a ``config.json`` (its family's) and the ``ViTConfig`` fields it states.

    Raises:
        CheckpointError: It is no family's config (the message lists what marks each), or its
            family's reader refuses a value (``TypeError`` and ``ValueError`` too).
    """
    formats = [family.config for family in FAMILIES.values() if family.config is not None]
    for config_format in formats:
        if (stated := config_format.read(data)) is not None:
            return config_format, stated
    markers = "; ".join(
        f"{family.title}: {family.config.marker}"
        for family in FAMILIES.values()
        if family.config is not None
    )
    raise CheckpointError(
        f"it is not the config of any family vitlib reads (by what marks each: {markers})"
    )


def export_state_dict(model: ViT, family: str = "timm") -> dict[str, Tensor]:
    """``model``'s weights under a family's names: ``"timm"``, ``"huggingface"`` or ``"vitlib"``
    (every family in [`FAMILIES`][vitlib.checkpoints.FAMILIES] that can be written).

    Loading the result into the peer's model of the same architecture gives the same outputs;
    converting it back with [`convert_state_dict`][vitlib.checkpoints.convert_state_dict] gives
    ``model.state_dict()`` exactly.
    """
    writable = [name for name, entry in FAMILIES.items() if entry.from_vitlib is not None]
    exporter = FAMILIES[check_choice("family", family, writable)].from_vitlib
    if exporter is None:  # unreachable: check_choice accepted writable families only
        raise CheckpointError(f"cannot export to {family!r}")
    state = {key: value.detach() for key, value in model.state_dict().items()}
    return exporter(state, model.config)
