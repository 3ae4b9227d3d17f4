"""The ``vitlib train`` recipe (also ``examples/train_from_scratch.py``): options to a run.

The data is the embedded digits or a ``--data`` folder, split by `vitlib.training.run_data`
into training, validation (which chooses ``best/``) and test (evaluated once, at the end). The
run directory, ``runs/<data name>`` unless ``--output-dir`` says (numbered when taken), receives
what [`fit`][vitlib.training.fit] saves plus ``settings.json``, ``history.png`` and
``predictions.png`` (with matplotlib). docs/training.md says more.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import warnings
from collections.abc import Callable, Iterator, Sized
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, cast

import torch
from torch import nn
from torch.utils.data import Subset

from vitlib.checkpoints.metadata import attach_metadata, model_metadata
from vitlib.checkpoints.pretrained import load_pretrained
from vitlib.checkpoints.run_folder import BEST, SETTINGS_FILE
from vitlib.counting import count_parameters
from vitlib.data.image_folder import ImageFolderDataset, SkippedImagesWarning, load_image_splits
from vitlib.training.config import TrainConfig
from vitlib.training.distributed import DistributedContext, distributed_session
from vitlib.training.errors import TrainingConfigError
from vitlib.training.history import History
from vitlib.training.loop import fit
from vitlib.training.rng import seed_everything
from vitlib.training.run_data import (
    RESIZE_RULES,
    SELECTION_KEY,
    RunData,
    digits_data,
    eval_preprocessing,
    folder_data,
    resolve_preprocessing_options,
    run_loaders,
)
from vitlib.training.run_dir import (
    check_output_dir,
    check_same_settings,
    saved_settings,
    write_run_json,
)
from vitlib.training.run_lock import run_lock
from vitlib.training.run_names import (
    claim_run_dir,
    data_name,
    default_run_dir,
    latest_numbered,
)
from vitlib.vit import create_model

#: The digits' recipe (benchmarks/digits_learning_target.py measured it).
DIGITS_DEFAULTS: Final[dict[str, Any]] = {
    "preset": "ViT-Ti/4",
    "image_size": 16,
    "layers": 4,
    "epochs": 15,
    "batch_size": 64,
    "lr": 2e-3,
    "warmup_steps": 50,
}
#: The options a ``--data`` folder's recipe chooses when they are left out
#: (`vitlib.training.auto_recipe.choose_recipe`'s arguments, by option name).
FOLDER_CHOICES: Final = (
    "image_size",
    "preset",
    "layers",
    "epochs",
    "batch_size",
    "max_steps",
    "warmup_steps",
    "lr",
    "crop_scale",
    "crop_aspect",
    "resize",
    "crop_ratio",
)


def _resumed_choices(args: argparse.Namespace) -> tuple[Path, dict[str, Any]] | None:
    """``(path, settings)`` of the run ``--resume`` continues (``--output-dir``, else the latest
    ``runs/<data name>``), or ``None`` where it has no ``settings.json``: a resumed run keeps
    the recipe it was made with (the choices depend on ``--epochs``, which may change)."""
    run = (
        args.output_dir
        if args.output_dir is not None
        else latest_numbered(default_run_dir(args.data))
    )
    settings = saved_settings(Path(run), SETTINGS_FILE)
    return None if settings is None else (Path(run) / SETTINGS_FILE, settings)


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the options left at ``None``: the digits' defaults, or the recipe a ``--data``
    folder's training images call for (`choose_folder_recipe`, whose one-line explanation is
    kept in ``args.recipe_note``); the output folder is chosen later, under its lock
    (`locked_output_dir`)."""
    args.recipe_note = None
    if args.data is None:
        for name, value in DIGITS_DEFAULTS.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
    else:
        args.recipe_note = choose_folder_recipe(args)
    resolve_preprocessing_options(args)  # refuses them for the digits
    return args


def choose_folder_recipe(args: argparse.Namespace) -> str:
    """Fill the `FOLDER_CHOICES` left at ``None`` with the recipe
    [`choose_recipe`][vitlib.training.auto_recipe.choose_recipe] picks for the training images
    of ``args.data`` (``train/`` less the validation images held out of it); return its
    explanation, with ``recipe:`` in front.

    Raises:
        FileNotFoundError, DataError: The folder is not a data folder (as `load_image_splits`).
        ConfigError: A given option contradicts the recipe (e.g. an image size no patch grid
            divides).
    """
    from vitlib.training.auto_recipe import choose_recipe, read_folder_stats

    resumed = _resumed_choices(args) if args.resume else None
    if resumed is not None:
        for name in FOLDER_CHOICES:
            flag = "--" + name.replace("_", "-")
            if getattr(args, name) is None and flag in resumed[1]:
                setattr(args, name, resumed[1][flag])
        # --max-steps may change on a resume (MAY_CHANGE), so settings.json does not hold it.
        if all(getattr(args, name) is not None for name in FOLDER_CHOICES if name != "max_steps"):
            return f"recipe: as the run made it ({resumed[0]})"
    with warnings.catch_warnings():  # the data loading reports skipped images, once
        warnings.simplefilter("ignore", SkippedImagesWarning)
        splits = load_image_splits(
            args.data, val_split=args.val_split, seed=args.seed, strict=args.strict
        )
    training = splits.train
    if isinstance(training, Subset):
        folder = cast("ImageFolderDataset", training.dataset)
        samples = [folder.samples[index] for index in training.indices]
    else:
        samples = cast("ImageFolderDataset", training).samples
    stats = read_folder_stats(samples, len(splits.classes))
    given = {name: getattr(args, name) for name in FOLDER_CHOICES}
    given = {name: value for name, value in given.items() if value is not None}
    resolve_preprocessing_options(args)  # --resize and --crop-ratio checked in flag words
    if "resize" in given or "crop_ratio" in given:
        given.update(resize=RESIZE_RULES[args.resize], crop_ratio=args.crop_ratio)
    for name in ("crop_scale", "crop_aspect"):
        if name in given:
            given[name] = tuple(given[name])
    recipe = choose_recipe(stats, **given)
    for name in FOLDER_CHOICES:
        setattr(args, name, getattr(recipe, name))
    args.resize = next(word for word, rule in RESIZE_RULES.items() if rule == recipe.resize)
    args.crop_scale, args.crop_aspect = list(recipe.crop_scale), list(recipe.crop_aspect)
    return f"recipe: {recipe.explanation}"


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


@contextmanager
def locked_output_dir(
    args: argparse.Namespace, context: DistributedContext, suffix: str = ""
) -> Iterator[None]:
    """Hold the lock of the run's folder for the whole command.

    Without ``--output-dir`` the folder is named after the data, ``runs/<name><suffix>``: a new
    run takes the first free one of it, ``-2``, ``-3``... (under its lock, so that two commands
    never take the same); ``--resume`` and ``--overwrite`` mean the latest of them. It is set as
    ``args.output_dir`` and printed.
    """
    if args.output_dir is not None:
        with run_lock(args.output_dir, cli=True):
            yield
        return
    base = default_run_dir(args.data, suffix)
    if args.resume or args.overwrite:
        args.output_dir = latest_numbered(base)
        verb = "resuming" if args.resume else "replacing"
        _say(context, f"{verb} the latest run of {data_name(args.data)}: {args.output_dir}")
        with run_lock(args.output_dir, cli=True):
            yield
        return
    with claim_run_dir(base, cli=True) as folder:
        args.output_dir = folder
        why = "" if folder == base else f" ({base} is taken)"
        _say(context, f"run folder: {folder}{why}; --output-dir chooses another")
        yield


def _say(context: DistributedContext, line: str) -> None:
    if context.is_main:
        print(line)


def fit_from_args(
    model: nn.Module,
    data: RunData,
    args: argparse.Namespace,
    config: TrainConfig,
    context: DistributedContext,
    **options: Any,
) -> History:
    """[`fit`][vitlib.training.fit] as the commands run it: the run options of ``args``,
    ``settings.json`` saved each epoch, then (rank 0) the plots and the closing lines."""
    train_loader, val_loader, test_loader = run_loaders(data, args, distributed=context.enabled)
    history = fit(
        model,
        train_loader,
        val_loader,
        test_loader=test_loader,
        epochs=args.epochs,
        output_dir=args.output_dir,
        resume=args.resume,
        overwrite=args.overwrite,
        seed=args.seed,
        progress=not args.no_progress,
        config=config,
        on_epoch_end=save_settings_each_epoch(args, context, data.selection),
        val_name=data.val_name,
        **options,
    )
    if context.is_main:
        save_plots(history, data, args, context.device())
        print(closing_line(history))
        out = args.output_dir
        print(f"run saved in {out}; predict with: vitlib predict {out} IMAGE")
    return history


def closing_line(history: History) -> str:
    """The summary a command ends with: the test accuracy of the best epoch, and what chose it."""
    best = history.best_epoch()
    if history.test is not None:
        return (
            f"final test accuracy: {history.test.acc:.4f} (best epoch {history.test.epoch} of "
            f"{len(history)}, chosen on validation: validation accuracy "
            f"{history.val_acc[best - 1]:.4f})"
        )
    return (
        f"final test accuracy: {history.val_acc[best - 1]:.4f} (best epoch {best} of "
        f"{len(history)}, chosen on the test split itself, so optimistic: --val-split 0 and "
        "no valid/ folder)"
    )


#: The options that may change when a run is resumed (its length and how it is run), and the
#: command's own plumbing; every other option makes the run what it is (``settings.json``).
MAY_CHANGE: Final = frozenset(
    {"epochs", "max_steps", "output_dir", "overwrite", "resume", "no_progress", "command"}
    | {"grad_checkpointing", "parallel", "handler", "recipe_note", "strict"}
)


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``{"--flag": value}`` of the options that make the run (all but ``MAY_CHANGE``), as JSON
    values, for ``settings.json``."""
    return {
        "--" + name.replace("_", "-"): str(value) if isinstance(value, Path) else value
        for name, value in vars(args).items()
        if name not in MAY_CHANGE
    }


def check_run_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """Refuse, before any data is loaded, an --output-dir that would be overwritten silently, a
    --resume without a run, or a --resume that changes the run's options; in flag names.

    Returns:
        The settings of the run to resume (``None`` for a new run).
    """
    check_output_dir(args.output_dir, resume=args.resume, overwrite=args.overwrite, cli=True)
    saved = saved_settings(args.output_dir, SETTINGS_FILE) if args.resume else None
    if saved is not None:
        given = run_settings(args)
        check_same_settings(
            saved,
            given,
            args.output_dir,
            may_change=("--epochs", "--max-steps", SELECTION_KEY),
            cli=True,
        )
        if SELECTION_KEY not in saved and args.val_split != 0:
            raise TrainingConfigError(
                f"--resume: the run in {args.output_dir} was made by an earlier vitlib, which "
                "chose best/ on the test split and held no validation split out of the training "
                f"images; --val-split {args.val_split} would change its training data. Resume "
                "it as it was made with --val-split 0 (and, for a --data folder, --resize "
                "shorter-side --crop-ratio 0.875, its evaluation crop), or start a new run."
            )
    return saved


def save_settings_each_epoch(
    args: argparse.Namespace, context: DistributedContext, selection: dict[str, Any]
) -> Callable[[int, History], None]:
    """An ``on_epoch_end`` callback writing ``settings.json`` into the run (rank 0): the options
    and the record of what chooses the model (``model_selection``)."""
    settings = {**run_settings(args), SELECTION_KEY: selection}

    def save(epoch: int, history: History) -> None:
        if context.is_main:
            write_run_json(args.output_dir, SETTINGS_FILE, settings)

    return save


def load_data(args: argparse.Namespace, saved: dict[str, Any] | None = None) -> RunData:
    """The digits or the image folders, split into training, validation and test (as the
    resumed run's ``saved`` settings record, if any)."""
    where = args.output_dir / SETTINGS_FILE
    if args.data is None:
        return digits_data(args, saved, where, image_size=args.image_size, augment=True)
    return folder_data(args, eval_preprocessing(args, args.image_size), saved, where)


def save_plots(
    history: History, data: RunData, args: argparse.Namespace, device: torch.device
) -> None:
    """Write ``history.png`` and ``predictions.png`` into the run directory (needs matplotlib);
    rank 0 alone calls it, and predicts on ``device``.

    The predictions are those of the saved model of the best epoch, ``best/``, loaded as a
    plain ViT (a model sharded by FSDP could only run with every rank taking part), on the test
    images, each class in turn (the test set is sorted by class, so its first batch would show
    one class only).
    """
    if importlib.util.find_spec("matplotlib") is None:
        print('matplotlib is not installed; no plots (pip install "vitlib[plots]")')
        return
    from vitlib.analysis.plots import plot_history, plot_predictions

    replace = args.overwrite or args.resume  # the plots belong to the run being replaced
    out = args.output_dir
    print(f"curves: {plot_history(history.as_dict(), out / 'history.png', overwrite=replace)}")
    images, labels = sample_every_class(data.test if data.test is not None else data.val, 16)
    model = load_pretrained(out / BEST).to(device)
    with torch.no_grad():
        predictions = model(images.to(next(model.parameters()).device)).argmax(dim=-1).cpu()
    spec = model_metadata(model).preprocessing  # how the images were normalised
    mean, std = (spec.mean, spec.std) if spec is not None else (None, None)
    grid = plot_predictions(
        images,
        labels,
        predictions,
        data.classes,
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
    caller holds the run's lock (`locked_output_dir`)."""
    config = recipe_config(args)
    saved = check_run_options(args)
    data = load_data(args, saved)
    seed_everything(args.seed)  # the same initial weights on every rank
    overrides = {} if args.layers is None else {"num_transformer_layers": args.layers}
    model = create_model(
        args.preset,
        img_size=args.image_size,
        in_channels=data.preprocessing.channels,
        num_classes=len(data.classes),
        mlp_dropout=args.dropout,
        embedding_dropout=args.dropout,
        **overrides,
    )
    # The from-scratch init: position embeddings spread with std 1.0 by default (the model's
    # reset_parameters documents why), every other weight as the reference code draws it.
    model.reset_parameters(position_std=args.position_std)
    attach_metadata(model, labels=data.classes, preprocessing=data.preprocessing)  # saved with it
    model.to(context.device())
    if context.is_main:
        if args.recipe_note is not None:
            print(args.recipe_note)
        print(
            f"{args.preset} ({count_parameters(model.config):,} parameters) on "
            f"{args.data or 'digits'}: {sizes(data)}, {context.world_size} process(es)"
        )
        print(data.describe())
    return fit_from_args(
        model,
        data,
        args,
        config,
        context,
        grad_checkpointing=args.grad_checkpointing,
        parallel=args.parallel,
    )


def sizes(data: RunData) -> str:
    """``"360 train / 40 validation / 100 test images"``."""
    counts = [("train", data.train), (data.val_name, data.val)]
    counts += [] if data.test is None else [("test", data.test)]
    return " / ".join(f"{len(cast('Sized', split))} {name}" for name, split in counts) + " images"


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
        with locked_output_dir(args, context):
            train_from_args(args, context)
    return 0
