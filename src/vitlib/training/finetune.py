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
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from vitlib._checks import check_int, check_type
from vitlib.checkpoints import load_pretrained
from vitlib.checkpoints.metadata import attach_metadata, model_metadata
from vitlib.counting import count_parameters
from vitlib.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DigitsDataset,
    Preprocessing,
    digits_preprocessing,
    load_image_folders,
    make_dataloaders,
)
from vitlib.training.distributed import DistributedContext
from vitlib.training.recipe import (
    check_run_options,
    fit_from_args,
    recipe_config,
)
from vitlib.training.run_lock import run_lock
from vitlib.vit import ViT

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


def _data(
    data: Path | None, image_size: int, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[Dataset[Any], Dataset[Any], list[str], Preprocessing]:
    """``(train, test, class_names, preprocessing)``: the image folders, or the digits."""
    if data is None:
        train = DigitsDataset("train", image_size=image_size)
        test = DigitsDataset("test", image_size=image_size)
        return train, test, train.classes, digits_preprocessing(image_size)
    spec = Preprocessing((image_size, image_size), mean=mean, std=std)
    train_folder, test_folder = load_image_folders(data, spec)
    return train_folder, test_folder, train_folder.classes, spec


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
    with run_lock(args.output_dir, cli=True):  # held for the whole command
        return _finetune(args)


def _finetune(args: argparse.Namespace) -> int:
    """`run_finetune` inside the run's lock."""
    check_run_options(args)  # before loading anything
    torch.manual_seed(args.seed)
    heads = {} if args.num_heads is None else {"num_heads": args.num_heads}
    pretrained = load_pretrained(args.checkpoint, **heads)
    image_size = args.image_size or pretrained.config.image_hw[0]
    mean, std = _checkpoint_statistics(pretrained)
    train_set, test_set, class_names, preprocessing = _data(args.data, image_size, mean, std)
    model = load_pretrained(  # a copy of the pretrained model, adapted to the data:
        pretrained,
        num_classes=len(class_names),  # a new head (a warning says it is untrained)
        img_size=image_size,  # position embeddings resampled if the size differs
        in_channels=preprocessing.channels,  # patch kernel adapted, e.g. RGB -> grey
    )
    attach_metadata(model, labels=class_names, preprocessing=preprocessing)
    freeze_backbone(model, args.unfreeze_last)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f"{args.checkpoint}: {count_parameters(model.config):,} parameters, "
        f"{trainable:,} trainable; {len(class_names)} classes, {image_size}px"
    )
    train_loader, test_loader = make_dataloaders(
        train_set, test_set, args.batch_size, seed=args.seed, num_workers=args.num_workers
    )
    config = recipe_config(args, optimizer="adam")  # the chapter's: Adam at 1e-3
    loaders = (train_loader, test_loader)
    fit_from_args(model, loaders, class_names, args, config, DistributedContext())
    return 0
