"""The presets table, generated from the code, for the README, docs/presets.md and
``vitlib presets``."""

from __future__ import annotations

from typing import Final

from vitlib.config import ViTConfig, list_presets
from vitlib.counting import count_flops, count_parameters

__all__ = ["presets_markdown"]

#: Parameter counts as printed in the papers: Table 1 of Dosovitskiy et al. (B, L, H); DeiT (Ti, S).
PAPER_PARAMETERS: Final[dict[str, str]] = {
    "Ti": "5.7M (DeiT)",
    "S": "22M (DeiT)",
    "B": "86M",
    "L": "307M",
    "H": "632M",
}


def presets_markdown() -> str:
    """A Markdown table of every published preset: Table 1 sizes, exact parameters and FLOPs.

    Parameters and FLOPs are computed by [`count_parameters`][vitlib.count_parameters] and
    [`count_flops`][vitlib.count_flops] for 224x224 RGB input and a 1000-class head.
    """
    lines = [
        "| preset | layers | hidden D | MLP size | heads | parameters (exact) "
        "| Table 1 | GFLOPs / image |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in list_presets():
        cfg = ViTConfig.from_preset(name)
        size_key = name.removeprefix("ViT-").split("/")[0]
        lines.append(
            f"| {name} | {cfg.num_transformer_layers} | {cfg.embedding_dim} | {cfg.mlp_size} "
            f"| {cfg.num_heads} | {count_parameters(cfg):,} | {PAPER_PARAMETERS[size_key]} "
            f"| {count_flops(cfg) / 1e9:.2f} |"
        )
    return "\n".join(lines)
