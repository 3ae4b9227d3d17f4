"""``vitlib train``: train a ViT from scratch on the digits or an image folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from vitlib._checks import check_number
from vitlib.cli.options import (
    COUNT,
    POSITIVE,
    RATE,
    DataDependent,
    add_command,
    add_training_options,
    flag_type,
)

#: The words of ``--resize``: the whole image squashed, or its shorter side resized and the
#: centre cut (`vitlib.data.Preprocessing`'s ``"squash"`` and ``"center_crop"``).
RESIZE_CHOICES = ("squash", "shorter-side")


def register(commands: Any) -> None:
    """Add the subcommand to ``commands`` (the parser's subparsers)."""
    parser = add_command(
        commands,
        "train",
        run,
        "train a ViT from scratch (digits by default, or an image folder)",
        "Train a ViT from scratch: on the embedded digits, or on a --data folder with a recipe "
        "chosen from its images (every choice a flag).",
    )
    add_train_options(parser)


def add_train_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``vitlib train`` (also ``examples/train_from_scratch.py``); those left at
    ``None`` get data-dependent values from `vitlib.training.recipe.resolve_defaults`."""
    data = parser.add_argument_group("data and model")
    data.add_argument(
        "--data",
        type=Path,
        help="folder with train/, test/ and perhaps valid/ (or val/); default: the digits",
    )
    data.add_argument(
        "--preset",
        help="model preset (default: ViT-Ti/4 for the digits; for a --data folder ViT-Ti with "
        "the patch size that cuts --image-size into an 8x8 grid)",
    )
    data.add_argument(
        "--layers",
        type=COUNT,
        help="encoder blocks (default: 4 for the digits; 6 for a --data folder without "
        "--preset, else the preset's)",
    )
    data.add_argument(
        "--image-size",
        type=COUNT,
        help="side of the model's input (default: 16 for the digits; for a --data folder "
        "chosen from its images' sizes, 32-128 px)",
    )
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
    add_split_and_preprocessing_options(parser)
    add_training_options(
        parser,
        {
            "epochs": DataDependent("15 for the digits; about 1000 steps for a --data folder"),
            "batch_size": DataDependent("64 for the digits; 8-64 for a --data folder"),
            "lr": DataDependent("0.002 for the digits; 0.001 for a --data folder"),
            "weight_decay": 0.05,
            "warmup_steps": DataDependent(
                "50 for the digits; a tenth of the steps for a --data folder"
            ),
            "label_smoothing": 0.1,
            "seed": 0,
            "max_steps": DataDependent(
                "no limit; for a --data folder where one epoch is over the compute bound, the "
                "steps within it"
            ),
            "output_dir": DataDependent("runs/<data name>, numbered -2, -3... when taken"),
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


#: A share of an image, in (0, 1].
_SHARE = flag_type(
    lambda name, value: check_number(name, value, low=0.0, high=1.0, low_open=True),
    float,
    "a number in (0, 1]",
)


def add_split_and_preprocessing_options(parser: argparse.ArgumentParser) -> None:
    """The options ``train`` and ``finetune`` share about the data: the validation split that
    chooses ``best/``, how evaluation images are fitted to the model's input, and the training
    crops."""
    group = parser.add_argument_group("validation, evaluation images and training crops")
    group.add_argument(
        "--val-split",
        type=RATE,
        default=0.1,
        help="share of each class held out of train/ to choose best/ on, when the data has no "
        "valid/ (or val/) folder; 0: none, best/ is then chosen on test/ (optimistic)",
    )
    group.add_argument(
        "--resize",
        choices=RESIZE_CHOICES,
        help="how evaluation and prediction images fit the square input: squash the whole "
        "image (default for folders: an object near an edge stays in), or resize the "
        "shorter side and cut the centre; saved with the model",
    )
    group.add_argument(
        "--crop-ratio",
        type=POSITIVE,
        help="with --resize shorter-side: the share of the shorter side kept, in [0.1, 1] "
        "(default 1.0; 0.875 is ImageNet's 224 of 256)",
    )
    group.add_argument(
        "--strict",
        action="store_true",
        help="stop at an unreadable image of a --data folder instead of skipping it",
    )
    group.add_argument(
        "--crop-scale",
        type=_SHARE,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="training crops of a --data folder: their area, as a share of the image, in "
        "(0, 1] (default: 0.35 1; ImageNet's 0.08 1 cuts a small object out of many crops)",
    )
    group.add_argument(
        "--crop-aspect",
        type=POSITIVE,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="training crops of a --data folder: their width / height (default for train: "
        "0.75 1.33 widened to the images' own; for finetune: 0.75 1.33)",
    )


def run(args: argparse.Namespace) -> int:
    """Train as the options say (joining torchrun's process group if there is one)."""
    from vitlib.training.recipe import run_from_args

    return run_from_args(args)
