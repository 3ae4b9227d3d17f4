"""``vitlib train``: train a ViT from scratch on the digits or an image folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vitlib.cli.options import COUNT, POSITIVE, RATE, add_command, add_training_options


def register(commands: Any) -> None:
    """Add the subcommand to ``commands`` (the parser's subparsers)."""
    parser = add_command(
        commands,
        "train",
        run,
        "train a ViT from scratch (digits by default, or an image folder)",
        "Train a ViT from scratch; see the training guide (docs/training.md).",
    )
    add_train_options(parser)


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``vitlib train`` (also ``examples/train_from_scratch.py``); those left at
    ``None`` get data-dependent values from `vitlib.training.recipe.resolve_defaults`."""
    data = parser.add_argument_group("data and model")
    data.add_argument("--data", type=Path, help="folder with train/ and test/; default: digits")
    data.add_argument("--preset", help="model preset; default ViT-Ti/4 (digits), ViT-Ti/16")
    data.add_argument("--layers", type=COUNT, help="override the preset's encoder depth")
    data.add_argument("--image-size", type=COUNT, help="default 16 (digits) or 224 (folders)")
    data.add_argument("--dropout", type=RATE, default=0.0, help="MLP and embedding dropout")
    data.add_argument(
        "--position-std",
        type=POSITIVE,
        default=1.0,
        help="std of the initial position embeddings (the model's own init: 0.02)",
    )
    data.add_argument(
        "--no-clean-copies",
        dest="clean_copies",
        action="store_false",
        help="digits: train on augmented images only (by default a clean copy of each too)",
    )
    add_training_options(
        parser,
        {
            "epochs": 15,
            "batch_size": 64,
            "lr": 2e-3,
            "weight_decay": 0.05,
            "warmup_steps": 50,
            "label_smoothing": 0.1,
            "seed": 0,
            "output_dir": Path("runs/from_scratch"),
        },
    )
    scale = parser.add_argument_group("memory and processes")
    scale.add_argument(
        "--grad-checkpointing",
        action="store_true",
        help="recompute each encoder block in the backward pass: less memory, more compute",
    )
    scale.add_argument(
        "--parallel",
        choices=("ddp", "fsdp"),
        default="ddp",
        help="under torchrun: ddp copies the model to every process, fsdp shards it (ViT-L/H)",
    )


def run(args: argparse.Namespace) -> int:
    """Train as the options say (joining torchrun's process group if there is one)."""
    from vitlib.training.recipe import run_from_args

    return run_from_args(args)
