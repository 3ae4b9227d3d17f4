"""What every family converter shares: its registry entry, the converted result and a
table-driven renamer."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from vitlib._checks import (
    check_bool,
    check_choice,
    check_layer_norm_eps,
    check_positive_int,
    check_rate,
    to_pair,
)
from vitlib.checkpoints.keys import Slot
from vitlib.checkpoints.metadata import ModelMetadata
from vitlib.config import ViTConfig
from vitlib.errors import CheckpointError

__all__ = [
    "ConfigFormat",
    "Converted",
    "Family",
    "LabelsReader",
    "PreprocessingReader",
    "Table",
    "checked_fields",
    "count_layers",
    "key_pairs",
    "rename",
    "require",
]

StateDict = dict[str, Tensor]
#: A family's names for vitlib's slots, as ``(foreign name, slot)`` pairs. For a bare tensor the
#: foreign name is its key; for a layer it is the layer's prefix, to which each parameter name is
#: appended (``proj`` -> ``proj.weight``), or a template whose ``{param}`` is replaced by it
#: (``in_proj_{param}`` -> ``in_proj_weight``). ``{i}`` stands for each encoder layer.
Table = tuple[tuple[str, Slot], ...]


@dataclass
class Converted:
    """A foreign checkpoint in vitlib's state-dict layout, plus what the family tells of the config.

    Attributes:
        family: The family name, e.g. ``"timm"``.
        state_dict: Tensors under vitlib's keys.
        hints: ``ViTConfig`` fields the family's conventions give (its ``layer_norm_eps``;
            Google's ``num_heads``, read from the attention kernels); shapes give the rest.
    """

    family: str
    state_dict: StateDict
    hints: dict[str, Any] = field(default_factory=dict)


#: Reads a family's class names from its ``config.json``: what it records (checked by the
#: caller), or None where it records none.
LabelsReader = Callable[[Mapping[str, Any]], Any]
#: Reads a family's ``Preprocessing`` fields from its ``config.json``, the side files present
#: (by name) and the checkpoint's config: what it records (checked by the caller), or None.
PreprocessingReader = Callable[[Mapping[str, Any], Mapping[str, Mapping[str, Any]], ViTConfig], Any]


@dataclass(frozen=True)
class ConfigFormat:
    """How a family's checkpoint folder describes its model: ``config.json`` and the JSON files
    beside it.

    Attributes:
        marker: What marks a ``config.json`` as the family's, for messages.
        read: The ``ViTConfig`` fields a ``config.json`` states, or None when it is not the
            family's.
        read_labels: The class names it records. Raises ``CheckpointError`` naming the field
            when they are malformed (the caller names the file).
        read_preprocessing: The preprocessing fields it records. Raises ``CheckpointError``
            naming the field and the reason when they are ones vitlib cannot use.
        preprocessing_file: The file the preprocessing is read from, for messages: a side file,
            or None for ``config.json``.
        side_files: JSON files read beside ``config.json`` (and fetched with it from a hub).
        write: The JSON files ``save_pretrained(format=name)`` writes, by file name, for a
            model's config and metadata; None where vitlib does not save in the family's format.
    """

    marker: str
    read: Callable[[Mapping[str, Any]], dict[str, Any] | None]
    read_labels: LabelsReader
    read_preprocessing: PreprocessingReader
    side_files: tuple[str, ...] = ()
    preprocessing_file: str | None = None
    write: Callable[[ViTConfig, ModelMetadata], dict[str, dict[str, Any]]] | None = None


@dataclass(frozen=True)
class Family:
    """One checkpoint family: everything vitlib knows of it.

    Adding a family is a module with its ``FAMILY`` and a line in
    [`FAMILIES`][vitlib.checkpoints.FAMILIES].

    Attributes:
        name: The family's name, e.g. ``"timm"``.
        title: Its name in messages, e.g. ``"Hugging Face"``.
        matches: Whether a set of state-dict keys is this family's.
        to_vitlib: Its state dict in vitlib's layout.
        from_vitlib: A vitlib state dict (of a model with the given config) under its names;
            None where vitlib does not export to the family.
        config: Its ``config.json`` and side files; None for a family without them.
        untold: ``ViTConfig`` fields its weights alone cannot tell (by name), with the warning
            ``load_pretrained`` gives when neither a config nor the caller tells them.
    """

    name: str
    title: str
    matches: Callable[[set[str]], bool]
    to_vitlib: Callable[[Mapping[str, Tensor]], Converted]
    from_vitlib: Callable[[Mapping[str, Tensor], ViTConfig], dict[str, Tensor]] | None = None
    config: ConfigFormat | None = None
    untold: Mapping[str, str] = field(default_factory=dict)


def count_layers(keys: Iterable[str], pattern: str) -> int:
    """Number of encoder layers, from keys matching ``pattern`` (a regex with one ``(\\d+)`` group).

    Raises:
        CheckpointError: The layer indices are not ``0..L-1``.
    """
    indices = {int(match.group(1)) for key in keys if (match := re.match(pattern, key))}
    if indices and indices != set(range(len(indices))):
        raise CheckpointError(
            f"encoder layer indices are not contiguous from 0: found {sorted(indices)}; "
            f"the checkpoint is incomplete or was edited."
        )
    return len(indices)


def key_pairs(table: Table, *, to_foreign: bool = False) -> tuple[tuple[str, str], ...]:
    """``(source key, target key)`` templates for every tensor of ``table``, for ``rename``.

    Args:
        table: The family's table.
        to_foreign: Pairs from vitlib's keys to the family's (for export) instead of the reverse.
    """
    pairs: list[tuple[str, str]] = []
    for foreign, slot in table:
        if not slot.params:
            pairs.append((foreign, slot.name))
        template = foreign if "{param}" in foreign else foreign + ".{param}"
        for param in slot.params:
            pairs.append((template.replace("{param}", param), f"{slot.name}.{param}"))
    return tuple((vitlib, name) for name, vitlib in pairs) if to_foreign else tuple(pairs)


def rename(
    foreign: Mapping[str, Tensor],
    table: Sequence[tuple[str, str]],
    depth: int,
    *,
    family: str,
) -> StateDict:
    """Move tensors from foreign names to vitlib names.

    ``table`` holds ``(foreign_template, vitlib_template)`` pairs; a ``{i}`` in a template stands
    for each encoder layer. Keys absent from ``foreign`` are skipped (optional tensors such as
    biases); leftover foreign keys are an error, so nothing is dropped silently.

    Raises:
        CheckpointError: ``foreign`` has keys that ``table`` does not map.
    """
    remaining = dict(foreign)
    converted: StateDict = {}
    for source, target in table:
        indices: Iterable[int] = range(depth) if "{i}" in source else (0,)
        for index in indices:
            key = source.format(i=index)
            if key in remaining:
                converted[target.format(i=index)] = remaining.pop(key)
    if remaining:
        names = sorted(remaining)
        raise CheckpointError(
            f"unexpected keys for a {family} ViT checkpoint: {names[:10]}"
            f"{' ...' if len(names) > 10 else ''}; this model variant is not supported "
            f"(vitlib maps the standard ViT only)."
        )
    return converted


_FIELD_CHECKS: dict[str, Callable[[str, Any], object]] = {
    "img_size": to_pair,
    "patch_size": to_pair,
    "in_channels": check_positive_int,
    "num_transformer_layers": check_positive_int,
    "embedding_dim": check_positive_int,
    "mlp_size": check_positive_int,
    "num_heads": check_positive_int,
    "layer_norm_eps": lambda _, value: check_layer_norm_eps(value),
    "qkv_bias": check_bool,
    "mlp_dropout": check_rate,
    "embedding_dropout": check_rate,
    "attn_dropout": check_rate,
    "pool": lambda name, value: check_choice(name, value, ("token", "mean")),
}


def checked_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields``, once each value a foreign ``config.json`` gave is type-checked, so that a bad
    one is blamed on the file (not on the ``ViTConfig`` built from it)."""
    for key, value in fields.items():
        _FIELD_CHECKS[key](key, value)
    return fields


def require(state: Mapping[str, Tensor], key: str, family: str) -> Tensor:
    """``state[key]``, or a ``CheckpointError`` naming the missing key."""
    if key not in state:
        raise CheckpointError(f"missing key {key!r} in the {family} checkpoint.")
    return state[key]
