"""``vitlib finetune``: the chapter's recipe, a pretrained ViT's new head on your images."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vitlib.cli.options import (
    COUNT,
    NON_NEGATIVE,
    DataDependent,
    add_command,
    add_training_options,
)
from vitlib.cli.train import add_split_and_preprocessing_options


def register(commands: Any) -> None:
    """Add the subcommand to ``commands`` (the parser's subparsers)."""
    parser = add_command(
        commands,
        "finetune",
        run,
        "fine-tune a pretrained ViT's new head on your images (the chapter's recipe)",
        "Fine-tune a pretrained ViT: frozen backbone (or its last blocks trained too), new head.",
    )
    model = parser.add_argument_group("checkpoint and data")
    model.add_argument(
        "--checkpoint", required=True, help="path, run folder, hf-hub:<repo> or torchvision:<name>"
    )
    model.add_argument(
        "--data",
        type=Path,
        help="folder with train/, test/ and perhaps valid/ (or val/); default: the digits",
    )
    model.add_argument("--image-size", type=COUNT, help="default: the checkpoint's")
    model.add_argument("--num-heads", type=COUNT, help="only if nothing else tells it")
    model.add_argument(
        "--unfreeze-last",
        type=NON_NEGATIVE,
        default=0,
        help="also train the last N encoder blocks",
    )
    add_split_and_preprocessing_options(parser)
    add_training_options(
        parser,
        {
            "epochs": 10,
            "batch_size": 32,
            "lr": 1e-3,
            "weight_decay": 0.0,
            "warmup_steps": 0,
            "label_smoothing": 0.0,
            "seed": 42,
            "max_steps": DataDependent("no limit"),
            "output_dir": DataDependent("runs/<data name>-finetune, numbered -2, -3... when taken"),
        },
    )


def run(args: argparse.Namespace) -> int:
    """Load the checkpoint, adapt it to the data and train its head."""
    from vitlib.training.finetune import run_finetune

    return run_finetune(args)
