"""The ``vitlib train`` recipe (also ``examples/train_from_scratch.py``): options to a run.

The data is the embedded digits or a ``--data`` folder; the run directory receives what
[`fit`][vitlib.training.fit] saves plus ``history.png`` and ``predictions.png`` (with
matplotlib). docs/training.md says more.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from collections.abc import Callable, Sized
from pathlib import Path
from typing import Any, Final, cast

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from vitlib.checkpoints.metadata import attach_metadata, model_metadata
from vitlib.checkpoints.pretrained import load_pretrained
from vitlib.checkpoints.run_folder import LAST, SETTINGS_FILE
from vitlib.counting import count_parameters
from vitlib.data import (
    DigitsDataset,
    Preprocessing,
    digits_preprocessing,
    load_image_folders,
    make_dataloaders,
)
from vitlib.training.config import TrainConfig
from vitlib.training.distributed import DistributedContext, distributed_session
from vitlib.training.errors import TrainingConfigError
from vitlib.training.history import History
from vitlib.training.loop import fit
from vitlib.training.rng import seed_everything
from vitlib.training.run_dir import (
    check_output_dir,
    check_same_settings,
    saved_settings,
    write_run_json,
)
from vitlib.training.run_lock import run_lock
from vitlib.vit import create_model

DIGITS_DEFAULTS: dict[str, Any] = {"preset": "ViT-Ti/4", "image_size": 16, "layers": 4}
FOLDER_DEFAULTS: dict[str, Any] = {"preset": "ViT-Ti/16", "image_size": 224, "layers": None}


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the options left at ``None`` with the digits' or the image folders' defaults."""
    defaults = DIGITS_DEFAULTS if args.data is None else FOLDER_DEFAULTS
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def recipe_config(args: argparse.Namespace, **fixed: Any) -> TrainConfig:
    """The ``TrainConfig`` of the training options ``train`` and ``finetune`` share, with the
    ``fixed`` fields of the command's recipe (``optimizer="adam"`` for fine-tuning)."""
    return TrainConfig(
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        label_smoothing=args.label_smoothing,
        amp_dtype=torch.bfloat16 if args.bf16 else None,
        max_steps=args.max_steps,
        **fixed,
    )


def fit_from_args(
    model: nn.Module,
    loaders: tuple[DataLoader[Any], DataLoader[Any]],
    class_names: list[str],
    args: argparse.Namespace,
    config: TrainConfig,
    context: DistributedContext,
    **options: Any,
) -> History:
    """[`fit`][vitlib.training.fit] as the commands run it: the run options of ``args``,
    ``settings.json`` saved each epoch, then (rank 0) the plots and the closing lines."""
    train_loader, test_loader = loaders
    history = fit(
        model,
        train_loader,
        test_loader,
        epochs=args.epochs,
        output_dir=args.output_dir,
        resume=args.resume,
        overwrite=args.overwrite,
        seed=args.seed,
        progress=not args.no_progress,
        config=config,
        on_epoch_end=save_settings_each_epoch(args, context),
        **options,
    )
    if context.is_main:
        save_plots(history, test_loader, class_names, args, context.device())
        best = max(history.test_acc)
        print(f"final test accuracy: {history.test_acc[-1]:.4f} (best {best:.4f})")
        out = args.output_dir
        print(f"run saved in {out}; predict with: vitlib predict {out} IMAGE")
    return history


#: The options that may change when a run is resumed (its length and how it is run), and the
#: command's own plumbing; every other option makes the run what it is (``settings.json``).
MAY_CHANGE: Final = frozenset(
    {"epochs", "max_steps", "output_dir", "overwrite", "resume", "no_progress", "command"}
    | {"grad_checkpointing", "parallel", "handler"}
)


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``{"--flag": value}`` of the options that make the run (all but ``MAY_CHANGE``), as JSON
    values, for ``settings.json``."""
    return {
        "--" + name.replace("_", "-"): str(value) if isinstance(value, Path) else value
        for name, value in vars(args).items()
        if name not in MAY_CHANGE
    }


def check_run_options(args: argparse.Namespace) -> None:
    """Refuse, before any data is loaded, an --output-dir that would be overwritten silently, a
    --resume without a run, or a --resume that changes the run's options; in flag names."""
    check_output_dir(args.output_dir, resume=args.resume, overwrite=args.overwrite, cli=True)
    saved = saved_settings(args.output_dir, SETTINGS_FILE) if args.resume else None
    if saved is not None:
        given = run_settings(args)
        check_same_settings(
            saved, given, args.output_dir, may_change=("--epochs", "--max-steps"), cli=True
        )


def save_settings_each_epoch(
    args: argparse.Namespace, context: DistributedContext
) -> Callable[[int, History], None]:
    """An ``on_epoch_end`` callback writing ``settings.json`` into the run (rank 0)."""
    settings = run_settings(args)

    def save(epoch: int, history: History) -> None:
        if context.is_main:
            write_run_json(args.output_dir, SETTINGS_FILE, settings)

    return save


def load_data(
    args: argparse.Namespace,
) -> tuple[Dataset[Any], Dataset[Any], list[str], Preprocessing]:
    """``(train_set, test_set, class_names, preprocessing)`` for digits or the image folders;
    ``preprocessing`` is how the test images are made, saved with the model."""
    if args.data is None:
        clean = DigitsDataset("train", image_size=args.image_size)
        augmented = DigitsDataset("train", image_size=args.image_size, augment=True)
        # Augmented next to clean images: the test images are sharp, the augmented ones slightly
        # blurred by resampling (see benchmarks/digits_learning_target.py).
        train = ConcatDataset([augmented, clean]) if args.clean_copies else augmented
        test = DigitsDataset("test", image_size=args.image_size)
        return train, test, clean.classes, digits_preprocessing(args.image_size)
    spec = Preprocessing.imagenet(args.image_size)
    folder_train, folder_test = load_image_folders(args.data, spec)
    return folder_train, folder_test, folder_train.classes, spec


def save_plots(
    history: History,
    test_loader: DataLoader[Any],
    class_names: list[str],
    args: argparse.Namespace,
    device: torch.device,
) -> None:
    """Write ``history.png`` and ``predictions.png`` into the run directory (needs matplotlib);
    rank 0 alone calls it, and predicts on ``device``.

    The predictions are those of the saved model, ``last/`` (the final weights), loaded as a
    plain ViT: a model sharded by FSDP could only run with every rank taking part. The grid
    shows test images of every class in turn (the test set is sorted by class, so its first
    batch would show one class only).
    """
    if importlib.util.find_spec("matplotlib") is None:
        print('matplotlib is not installed; no plots (pip install "vitlib[plots]")')
        return
    from vitlib.analysis.plots import plot_history, plot_predictions

    replace = args.overwrite or args.resume  # the plots belong to the run being replaced
    out = args.output_dir
    print(f"curves: {plot_history(history.as_dict(), out / 'history.png', overwrite=replace)}")
    images, labels = sample_every_class(test_loader.dataset, count=16)
    model = load_pretrained(out / LAST).to(device)
    with torch.no_grad():
        predictions = model(images.to(next(model.parameters()).device)).argmax(dim=-1).cpu()
    spec = model_metadata(model).preprocessing  # how the images were normalised
    mean, std = (spec.mean, spec.std) if spec is not None else (None, None)
    grid = plot_predictions(
        images,
        labels,
        predictions,
        class_names,
        out / "predictions.png",
        mean=mean,
        std=std,
        overwrite=replace,
    )
    print(f"predictions: {grid}")


def sample_every_class(dataset: Any, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` samples of ``dataset`` taking each class in turn: ``(images, labels)``.

    Uses ``dataset.targets`` where the data set has it; otherwise its first ``count`` samples.
    """
    targets = getattr(dataset, "targets", None)
    if not isinstance(targets, list):
        indices = list(range(min(count, len(dataset))))
    else:
        by_class: dict[int, list[int]] = {}
        for index, target in enumerate(targets):
            by_class.setdefault(int(target), []).append(index)
        queues = [by_class[label] for label in sorted(by_class)]
        indices = []
        for rank in range(max(len(queue) for queue in queues)):
            indices += [queue[rank] for queue in queues if rank < len(queue)]
        indices = indices[:count]
    samples = [dataset[index] for index in indices]
    images = torch.stack([image for image, _ in samples])
    return images, torch.tensor([int(label) for _, label in samples])


def check_parallel_option(args: argparse.Namespace, context: DistributedContext) -> None:
    """Refuse ``--parallel fsdp`` outside a torchrun launch, in the command's words."""
    if args.parallel == "fsdp" and not context.enabled:
        raise TrainingConfigError(
            "--parallel fsdp shards the model over the processes of a torchrun launch, but this "
            "is a single process; expected WORLD_SIZE > 1. Launch it as `torchrun "
            "--nproc_per_node N -m vitlib train --parallel fsdp ...`, or drop --parallel fsdp."
        )


def train_from_args(args: argparse.Namespace, context: DistributedContext) -> History:
    """Build the data and the model from ``args``, then [`fit`][vitlib.training.fit] them; the
    caller holds the run's lock (`run_lock`)."""
    config = recipe_config(args)
    check_run_options(args)
    train_set, test_set, class_names, preprocessing = load_data(args)
    train_loader, test_loader = make_dataloaders(
        train_set,
        test_set,
        args.batch_size,
        num_workers=args.num_workers,
        seed=args.seed,
        distributed=context.enabled,
    )
    seed_everything(args.seed)  # the same initial weights on every rank
    overrides = {} if args.layers is None else {"num_transformer_layers": args.layers}
    model = create_model(
        args.preset,
        img_size=args.image_size,
        in_channels=preprocessing.channels,
        num_classes=len(class_names),
        mlp_dropout=args.dropout,
        embedding_dropout=args.dropout,
        **overrides,
    )
    # The from-scratch init: position embeddings spread with std 1.0 by default (the model's
    # reset_parameters documents why), every other weight as the reference code draws it.
    model.reset_parameters(position_std=args.position_std)
    attach_metadata(model, labels=class_names, preprocessing=preprocessing)  # saved with it
    model.to(context.device())
    if context.is_main:
        train_size, test_size = len(cast("Sized", train_set)), len(cast("Sized", test_set))
        sizes = f"{train_size} train / {test_size} test images"
        print(
            f"{args.preset} ({count_parameters(model.config):,} parameters) on "
            f"{args.data or 'digits'}: {sizes}, {context.world_size} process(es)"
        )
    return fit_from_args(
        model,
        (train_loader, test_loader),
        class_names,
        args,
        config,
        context,
        grad_checkpointing=args.grad_checkpointing,
        parallel=args.parallel,
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Train as the parsed options say (joining torchrun's process group if there is one),
    holding the run's lock for the whole command: checks, data, training and plots.

    Returns:
        0. Errors (an existing run, a run in progress, a bad option...) propagate as exceptions.
    """
    resolve_defaults(args)
    with distributed_session() as context:
        logging.basicConfig(
            level=logging.INFO if context.is_main else logging.WARNING,
            format="%(message)s",
            stream=sys.stdout,
        )
        recipe_config(args)  # the options are checked before the run folder is touched
        check_parallel_option(args, context)
        with run_lock(args.output_dir, cli=True):
            train_from_args(args, context)
    return 0
