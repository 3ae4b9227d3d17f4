"""``vitlib predict RUN_OR_CHECKPOINT IMAGE...``: a trained model's top classes for your images."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Final

from vitlib.cli.options import COUNT, add_command
from vitlib.errors import ConfigError

_PLOTTED_IMAGES: Final = 16


def register(commands: Any) -> None:
    """Add the subcommand to ``commands`` (the parser's subparsers)."""
    parser = add_command(
        commands,
        "predict",
        run,
        "classify your own images with a trained model (its labels and preprocessing)",
        "Classify images with a run or checkpoint, prepared as its test set was.",
    )
    parser.add_argument(
        "model",
        metavar="RUN_OR_CHECKPOINT",
        help="a run folder (its best/), a checkpoint folder or file, hf-hub:<repo>...",
    )
    parser.add_argument(
        "images", metavar="IMAGE", nargs="+", type=Path, help="image files, or folders of them"
    )
    parser.add_argument("--top-k", type=COUNT, default=5, help="classes shown per image")
    parser.add_argument("--batch-size", type=COUNT, default=32, help="images per forward pass")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="OUT.png",
        help=f"draw the images titled with their prediction (the first {_PLOTTED_IMAGES})",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    parser.add_argument(
        "--strict", action="store_true", help="stop at an unreadable image instead of skipping it"
    )


def run(args: argparse.Namespace) -> int:
    """Print the predictions (and draw them with ``--plot``); 2 when no image could be read."""
    from vitlib.data.image_folder import SkippedImagesWarning
    from vitlib.inference.predict import predict

    if args.plot is not None:  # before any work: refuse to replace a file silently
        _check_plot_path(args.plot, args.overwrite)
    with warnings.catch_warnings():  # the skipped images are printed below, one line each
        warnings.simplefilter("ignore", SkippedImagesWarning)
        run = predict(
            args.model,
            args.images,
            top_k=args.top_k,
            batch_size=args.batch_size,
            strict=args.strict,
        )
    for skipped in run.skipped:
        print(f"vitlib predict: skipped {skipped.source}: {skipped.reason}", file=sys.stderr)
    if args.json:
        report = {
            "predictions": [prediction.to_dict() for prediction in run],
            "skipped": [{"source": s.source, "reason": s.reason} for s in run.skipped],
        }
        print(json.dumps(report, indent=2, allow_nan=False))
    else:
        for prediction in run:
            others = ", ".join(
                f"{label} {probability:.1%}"
                for label, probability in zip(
                    prediction.labels[1:], prediction.probabilities[1:], strict=True
                )
            )
            print(
                f"{prediction.source}: {prediction.label} ({prediction.probability:.1%})"
                + (f"  then {others}" if others else "")
            )
    if args.plot is not None and run:
        import torch

        from vitlib.analysis.plots import plot_image_predictions
        from vitlib.data.image_folder import open_image

        shown = run[:_PLOTTED_IMAGES]
        transform = run.preprocessing.transform()
        images = [transform(open_image(Path(prediction.source))) for prediction in shown]
        out = plot_image_predictions(
            torch.stack(images),
            [prediction.label for prediction in shown],
            [prediction.probability for prediction in shown],
            args.plot,
            mean=run.preprocessing.mean,
            std=run.preprocessing.std,
            overwrite=args.overwrite,
        )
        print(f"plot: {out}", file=sys.stderr if args.json else sys.stdout)
    if not run:
        print("vitlib predict: error: no readable image among those given", file=sys.stderr)
        return 2
    return 0


def _check_plot_path(path: Path, overwrite: bool) -> None:
    if path.suffix.lower() != ".png":
        raise ConfigError(f"--plot {path} must end in .png; give e.g. --plot predictions.png")
    if path.exists() and not overwrite:
        raise ConfigError(f"--plot {path} already exists; pass --overwrite to replace it")
