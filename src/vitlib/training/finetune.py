"""The ``vitlib finetune`` recipe (also ``examples/finetune.py``): frozen backbone, new head.

The learnpytorch.io chapter's recipe: any checkpoint that
[`load_pretrained`][vitlib.load_pretrained] reads, adapted to the data (classes, image size,
channels) and normalised with its recorded mean and std (ImageNet's where it records none), its
new head trained with Adam at 1e-3 while the backbone stays frozen. docs/finetuning.md says
more.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import torch

from vitlib._checks import check_int, check_type
from vitlib.checkpoints import load_pretrained
from vitlib.checkpoints.metadata import attach_metadata, model_metadata
from vitlib.checkpoints.run_folder import SETTINGS_FILE
from vitlib.counting import count_parameters
from vitlib.data import IMAGENET_MEAN, IMAGENET_STD
from vitlib.training.distributed import DistributedContext
from vitlib.training.recipe import (
    check_run_options,
    fit_from_args,
    locked_output_dir,
    recipe_config,
    sizes,
)
from vitlib.training.run_data import (
    RunData,
    digits_data,
    eval_preprocessing,
    folder_data,
    resolve_preprocessing_options,
)
from vitlib.vit import ViT

#: What ``vitlib finetune`` adds to the data's name for its folder: ``runs/<name>-finetune``.
FOLDER_SUFFIX = "-finetune"

__all__ = ["freeze_backbone", "run_finetune"]


def freeze_backbone(model: ViT, unfreeze_last: int) -> None:
    """Train only the head (and the last ``unfreeze_last`` encoder blocks and the final norm).

    Raises:
        InputTypeError: ``model`` is not a ViT, or ``unfreeze_last`` not an int.
        ConfigError: ``unfreeze_last`` is negative or more than the model's encoder blocks.
    """
    check_type("model", model, ViT, "a vitlib.ViT")
    blocks = len(model.transformer_encoder)
    check_int(
        "unfreeze_last",
        unfreeze_last,
        minimum=0,
        maximum=blocks,
        fix=f"the model has {blocks} encoder blocks; {blocks} trains them all",
    )
    for parameter in model.parameters():
        parameter.requires_grad = False
    trainable = [model.head]
    if unfreeze_last:
        trainable += [model.norm, *list(model.transformer_encoder)[-unfreeze_last:]]
    for module in trainable:
        for parameter in module.parameters():
            parameter.requires_grad = True


def _checkpoint_statistics(model: ViT) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std the checkpoint records for RGB images, else ImageNet's."""
    spec = model_metadata(model).preprocessing
    if spec is not None and spec.channels == 3:
        return spec.mean, spec.std
    return IMAGENET_MEAN, IMAGENET_STD


def run_finetune(args: argparse.Namespace) -> int:
    """Load the checkpoint, adapt it to the data, train the head; return 0.

    Raises:
        CheckpointError, TrainingConfigError, DataError: As the functions it calls; the
            messages name the command's flags where they are about them.
    """
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    recipe_config(args, optimizer="adam")  # the options are checked before anything is loaded
    resolve_preprocessing_options(args)
    context = DistributedContext()
    with locked_output_dir(args, context, FOLDER_SUFFIX):  # held for the whole command
        return _finetune(args, context)


def _finetune(args: argparse.Namespace, context: DistributedContext) -> int:
    """`run_finetune` inside the run's lock."""
    saved = check_run_options(args)  # before loading anything
    torch.manual_seed(args.seed)
    heads = {} if args.num_heads is None else {"num_heads": args.num_heads}
    pretrained = load_pretrained(args.checkpoint, **heads)
    image_size = args.image_size or pretrained.config.image_hw[0]
    data = _data(args, image_size, pretrained, saved)
    model = load_pretrained(  # a copy of the pretrained model, adapted to the data:
        pretrained,
        num_classes=len(data.classes),  # a new head (a warning says it is untrained)
        img_size=image_size,  # position embeddings resampled if the size differs
        in_channels=data.preprocessing.channels,  # patch kernel adapted, e.g. RGB -> grey
    )
    attach_metadata(model, labels=data.classes, preprocessing=data.preprocessing)
    freeze_backbone(model, args.unfreeze_last)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f"{args.checkpoint}: {count_parameters(model.config):,} parameters, "
        f"{trainable:,} trainable; {len(data.classes)} classes, {image_size}px; {sizes(data)}"
    )
    print(data.describe())
    config = recipe_config(args, optimizer="adam")  # the chapter's: Adam at 1e-3
    fit_from_args(model, data, args, config, context)
    return 0


def _data(
    args: argparse.Namespace, image_size: int, pretrained: ViT, saved: dict[str, Any] | None
) -> RunData:
    """The image folders, normalised as the checkpoint records, or the digits (un-augmented),
    with their validation split."""
    where = args.output_dir / SETTINGS_FILE
    if args.data is None:
        return digits_data(args, saved, where, image_size=image_size, augment=False)
    mean, std = _checkpoint_statistics(pretrained)
    spec = eval_preprocessing(args, image_size, mean, std)
    return folder_data(args, spec, saved, where)
