"""``vitlib probe CHECKPOINT --data DIR|digits``: the paper's linear evaluation of a model's
frozen features, on every training image and few-shot (docs/probe.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vitlib.cli.options import COUNT, POSITIVE, add_command
from vitlib.errors import DataError


def register(commands: Any) -> None:
    """Add the subcommand to ``commands`` (the parser's subparsers)."""
    parser = add_command(
        commands,
        "probe",
        run,
        "linear probe of a model's frozen features (the paper's few-shot evaluation)",
        "Fit the paper's closed-form linear classifier to a model's frozen features of DIR/train "
        "and score it on DIR/test: accuracy on every training image, and per number of shots.",
    )
    parser.add_argument(
        "model",
        metavar="CHECKPOINT",
        help="a run folder (its best/), a checkpoint folder or file, hf-hub:<repo>...",
    )
    parser.add_argument(
        "--data",
        required=True,
        help="a folder with train/ and test/ of class folders, or 'digits'",
    )
    parser.add_argument(
        "--shots",
        type=COUNT,
        nargs="+",
        default=None,
        help="training images per class to probe with too, e.g. --shots 1 5 10 25",
    )
    parser.add_argument(
        "--seeds", type=COUNT, default=5, help="draws per number of shots (seeds 0, 1, ...)"
    )
    parser.add_argument(
        "--l2",
        type=POSITIVE,
        default=None,
        help="ridge penalty; default: chosen on a held-out fifth of the training images",
    )
    parser.add_argument("--batch-size", type=COUNT, default=64, help="images per forward pass")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    """Extract the features, fit the probes, print the table (or the JSON result)."""
    from vitlib.inference.predict import load_model
    from vitlib.inference.probe import linear_probe

    model = load_model(args.model)
    train, test = _splits(args.data, model)
    result = linear_probe(
        model,
        train,
        test,
        shots=args.shots or None,
        l2=args.l2,
        seeds=tuple(range(args.seeds)),
        batch_size=args.batch_size,
    )
    print(
        json.dumps(result.to_dict(), indent=2, allow_nan=False) if args.json else result.summary()
    )
    return 0


def _splits(data: str, model: Any) -> tuple[Any, Any]:
    """The training and test data of ``--data``: the digits splits, or DIR/train and DIR/test."""
    if data == "digits":
        from vitlib.data.digits import DigitsDataset

        size = model.config.image_hw[0]
        return DigitsDataset("train", image_size=size), DigitsDataset("test", image_size=size)
    root = Path(data)
    missing = [name for name in ("train", "test") if not (root / name).is_dir()]
    if missing:
        raise DataError(
            f"{root} has no {' or '.join(f'{name}/' for name in missing)} folder; expected "
            f"{root}/train/<class>/<images> and {root}/test/<class>/<images>, or --data digits."
        )
    return root / "train", root / "test"
