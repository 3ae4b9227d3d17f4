"""``vitlib evaluate RUN_OR_CHECKPOINT --data DIR|digits``: accuracy, per-class metrics,
confusion matrix and the most confident mistakes, as a report folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vitlib.cli.options import COUNT, NON_NEGATIVE, add_command
from vitlib.errors import ConfigError


def register(commands: Any) -> None:
    """Add the subcommand to ``commands`` (the parser's subparsers)."""
    parser = add_command(
        commands,
        "evaluate",
        run,
        "accuracy, top-5, per-class P/R/F1, confusion matrix and mistakes of a model",
        "Evaluate a run or checkpoint on labelled images; write a JSON report, "
        "confusion_matrix.png (of the classes present, up to 100) and mistakes.png.",
    )
    parser.add_argument(
        "model",
        metavar="RUN_OR_CHECKPOINT",
        help="a run folder (its best/), a checkpoint folder or file, hf-hub:<repo>...",
    )
    parser.add_argument(
        "--data",
        required=True,
        help="'digits', or a folder of class folders (DIR/<class>/<images>), or of splits "
        "(DIR/test/<class>/..., with or without DIR/train/: test/ is evaluated)",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=Path("evaluation"), help="where the report goes"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --output-dir's report")
    parser.add_argument("--batch-size", type=COUNT, default=64, help="images per forward pass")
    parser.add_argument(
        "--mistakes", type=NON_NEGATIVE, default=16, help="most confident mistakes drawn"
    )
    parser.add_argument("--json", action="store_true", help="print the JSON report")
    parser.add_argument(
        "--strict", action="store_true", help="stop at an unreadable image instead of skipping it"
    )


def run(args: argparse.Namespace) -> int:
    """Evaluate, save the report folder, print its summary (or the JSON report)."""
    from vitlib.files import recover_interrupted_save
    from vitlib.inference.evaluate import evaluate_model

    out: Path = args.output_dir
    if out.is_dir():
        recover_interrupted_save(out)
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:  # before the work
        raise ConfigError(
            f"--output-dir {out} is not empty; pass --overwrite to replace its report, or "
            "choose another --output-dir"
        )
    data = args.data if args.data == "digits" else Path(args.data)
    report = evaluate_model(
        args.model,
        data,
        batch_size=args.batch_size,
        max_mistakes=args.mistakes,
        strict=args.strict,
    )
    folder = report.save(out, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, allow_nan=False))
    else:
        print(report.summary())
    written = ", ".join(sorted(entry.name for entry in folder.iterdir()))
    print(f"report in {folder}: {written}", file=sys.stderr if args.json else sys.stdout)
    return 0
