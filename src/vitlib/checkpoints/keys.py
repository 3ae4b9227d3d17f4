"""vitlib's state-dict keys, named once: every family's table maps its own names to these slots.

A slot is one bare tensor (``position_embedding``) or one layer's parameters (``norm`` holds
``norm.weight`` and ``norm.bias``); ``{i}`` in a slot's name stands for each encoder layer. The
layout is public and pinned, keys and order, by ``tests/test_state_dict_layout.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CLASS_TOKEN",
    "FC1",
    "FC2",
    "HEAD",
    "LAYER_PATTERN",
    "MLP_NORM",
    "MLP_SCALE",
    "MSA_NORM",
    "MSA_SCALE",
    "NORM",
    "OUT_PROJ",
    "PATCH",
    "POSITION",
    "PRE_LOGITS",
    "QKV",
    "REGISTER_TOKENS",
    "SLOTS",
    "Slot",
]

_LAYER: Final = "transformer_encoder.{i}"
#: Matches the start of a key of encoder layer ``N``, capturing ``N``.
LAYER_PATTERN: Final = re.escape(_LAYER).replace(re.escape("{i}"), r"(\d+)") + r"\."


@dataclass(frozen=True)
class Slot:
    """A tensor of vitlib's layout, or the parameters of one of its layers.

    Attributes:
        name: The key of a bare tensor, or the prefix of a layer's keys; ``{i}`` stands for the
            encoder layer's index.
        params: The layer's parameter names (``("weight", "bias")``); empty for a bare tensor.
    """

    name: str
    params: tuple[str, ...] = ("weight", "bias")

    def key(self, param: str | None = None, *, layer: int = 0) -> str:
        """The key of ``param`` (None for a bare tensor) in encoder layer ``layer``."""
        template = self.name if param is None else f"{self.name}.{param}"
        return template.format(i=layer)

    def owns(self, key: str) -> bool:
        """Whether ``key`` is one of this slot's keys (in any layer)."""
        pattern = re.escape(self.name).replace(re.escape("{i}"), r"\d+")
        return re.fullmatch(pattern + (r"\.\w+" if self.params else ""), key) is not None


CLASS_TOKEN: Final = Slot("class_embedding", ())
REGISTER_TOKENS: Final = Slot("register_tokens", ())
POSITION: Final = Slot("position_embedding", ())
PATCH: Final = Slot("patch_embedding.patcher")
MSA_NORM: Final = Slot(f"{_LAYER}.msa_block.layer_norm")
QKV: Final = Slot(f"{_LAYER}.msa_block.qkv")
OUT_PROJ: Final = Slot(f"{_LAYER}.msa_block.out_proj")
MSA_SCALE: Final = Slot(f"{_LAYER}.msa_scale", ("gamma",))
MLP_NORM: Final = Slot(f"{_LAYER}.mlp_block.layer_norm")
FC1: Final = Slot(f"{_LAYER}.mlp_block.fc1")
FC2: Final = Slot(f"{_LAYER}.mlp_block.fc2")
MLP_SCALE: Final = Slot(f"{_LAYER}.mlp_scale", ("gamma",))
NORM: Final = Slot("norm")
PRE_LOGITS: Final = Slot("pre_logits.fc")
HEAD: Final = Slot("head")

#: Every slot, in the order of ``ViT.state_dict()``.
SLOTS: Final = (
    CLASS_TOKEN,
    REGISTER_TOKENS,
    POSITION,
    PATCH,
    MSA_NORM,
    QKV,
    OUT_PROJ,
    MLP_NORM,
    FC1,
    FC2,
    MSA_SCALE,
    MLP_SCALE,
    NORM,
    PRE_LOGITS,
    HEAD,
)
