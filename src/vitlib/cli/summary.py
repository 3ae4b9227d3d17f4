"""``vitlib summary PRESET``: the per-layer table of a preset, built on the meta device."""

from __future__ import annotations

import argparse
from typing import Any

from vitlib.cli.options import COUNT, NON_NEGATIVE, add_command


def register(commands: Any) -> None:
    """Add the subcommand to ``commands`` (the parser's subparsers)."""
    parser = add_command(
        commands,
        "summary",
        run,
        "per-layer table of a preset: output shapes, parameters, trainable",
        "Summarise a preset without allocating its weights (meta device).",
    )
    parser.add_argument("preset", help="e.g. ViT-B/16, vit_b_16, vit_base_patch16_384")
    parser.add_argument("--num-classes", type=NON_NEGATIVE, help="default: the preset's")
    parser.add_argument("--img-size", type=COUNT, help="default: the preset's")
    parser.add_argument("--in-channels", type=COUNT, help="default: the preset's")
    parser.add_argument("--depth", type=NON_NEGATIVE, default=2, help="module levels shown")


def run(args: argparse.Namespace) -> int:
    """Print the summary."""
    from vitlib.analysis.summary import summary
    from vitlib.config import ViTConfig

    names = ("num_classes", "img_size", "in_channels")
    overrides = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    print(summary(ViTConfig.from_preset(args.preset, **overrides), depth=args.depth))
    return 0
