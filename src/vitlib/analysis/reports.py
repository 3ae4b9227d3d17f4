"""Plain-text reports generated from the code: the presets table of the README and the CLI, and
the sharded-training memory table of docs/training.md."""

from __future__ import annotations

from typing import Final

from vitlib.config import ViTConfig, list_presets
from vitlib.counting import count_flops, count_parameters, parameter_breakdown

__all__ = ["presets_markdown", "sharding_memory_markdown"]

#: Bytes per parameter of float32 training with AdamW: weight, gradient, two moments.
TRAINING_BYTES_PER_PARAMETER: Final = 16
#: The presets and process counts of the sharded-training table.
SHARDING_PRESETS: Final = ("ViT-B/16", "ViT-L/16", "ViT-H/14")
SHARDING_PROCESSES: Final = (4, 8, 16)

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


def sharding_memory_markdown() -> str:
    """A Markdown table of the weights, gradients and AdamW state per GPU, DDP against FSDP.

    Float32 training with AdamW keeps 16 bytes per parameter (weight, gradient, two moments):
    ``16 P`` per GPU under DDP, ``16 P / N`` under FSDP on ``N`` GPUs, plus the float32 weights
    and gradients of the block being computed (gathered, then freed). Activations come on top,
    the same under both. Parameters from [`count_parameters`][vitlib.count_parameters] (224x224
    RGB, 1000 classes); GB are 10^9 bytes.
    """
    per_parameter = TRAINING_BYTES_PER_PARAMETER
    lines = [
        "| preset | parameters | DDP, per GPU | "
        + " | ".join(f"FSDP on {n} GPUs" for n in SHARDING_PROCESSES)
        + " | one block in flight (weights + gradients) |",
        "|---|---:|---:|" + "---:|" * len(SHARDING_PROCESSES) + "---:|",
    ]
    for name in SHARDING_PRESETS:
        cfg = ViTConfig.from_preset(name)
        parameters = count_parameters(cfg)
        encoder = next(v for k, v in parameter_breakdown(cfg).items() if "encoder" in k)
        block = encoder // cfg.num_transformer_layers
        cells = [f"{per_parameter * parameters / n / 1e9:.2f} GB" for n in SHARDING_PROCESSES]
        lines.append(
            f"| {name} | {parameters / 1e6:.1f} M | {per_parameter * parameters / 1e9:.2f} GB | "
            + " | ".join(cells)
            + f" | {2 * 4 * block / 1e6:.0f} MB |"
        )
    return "\n".join(lines)
