"""``vitlib evaluate RUN_OR_CHECKPOINT --data DIR|digits``: accuracy, per-class metrics,
confusion matrix and the most confident mistakes, as a report folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vitlib.cli.options import COUNT, NON_NEGATIVE, add_command, add_inference_options
from vitlib.errors import ConfigError


def register(commands: Any) -> None:
    """Add the subcommand to ``commands`` (the parser's subparsers)."""
    parser = add_command(
        commands,
        "evaluate",
        run,
        "accuracy, top-5, per-class P/R/F1, confusion matrix and mistakes of a model",
        "Evaluate a run or checkpoint on labelled images; write a JSON report, "
        "confusion_matrix.png (of the classes present, up to 100) and mistakes.png into the "
        "run's evaluation/ folder. Top-5 is left out for 5 classes or fewer (it is 1.0 there); "
        "a note says when the images evaluated chose or trained the run's model.",
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
        "--output-dir",
        type=Path,
        help="where the report goes; default: RUN/evaluation for a run folder (or its best/ or "
        "last/), else ./evaluation; a taken one is numbered: evaluation-2, evaluation-3...",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the report in --output-dir (without --output-dir: the latest evaluation "
        "folder's)",
    )
    parser.add_argument("--batch-size", type=COUNT, default=64, help="images per forward pass")
    parser.add_argument(
        "--mistakes", type=NON_NEGATIVE, default=16, help="most confident mistakes drawn"
    )
    parser.add_argument("--json", action="store_true", help="print the JSON report")
    add_inference_options(parser)


def report_folder(model: str, *, overwrite: bool) -> Path:
    """Where the report of ``model`` goes without ``--output-dir``: ``evaluation`` inside its
    run (a run folder, or the run of the ``best/`` or ``last/`` given), else in the working
    directory; the first free of ``evaluation``, ``evaluation-2``..., or with ``overwrite`` the
    latest of them."""
    from vitlib.checkpoints.run_folder import BEST, LAST, checkpoint_of_run
    from vitlib.training.run_names import first_free, latest_numbered

    path = Path(model)
    run = None
    for folder in (path, path.parent) if path.name in (BEST, LAST) else (path,):
        if run is None and folder.is_dir() and checkpoint_of_run(folder) is not None:
            run = folder
    base = (run or Path()) / "evaluation"
    return latest_numbered(base) if overwrite else first_free(base)


def run(args: argparse.Namespace) -> int:
    """Evaluate, save the report folder, print its summary (or the JSON report)."""
    from vitlib.files import recover_interrupted_save
    from vitlib.inference.evaluate import evaluate_model

    out: Path = args.output_dir or report_folder(args.model, overwrite=args.overwrite)
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
        precision=args.precision,
        num_workers=args.num_workers,
        progress=True,  # a bar on a terminal only: nothing in a pipe or a log
    )
    folder = report.save(out, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, allow_nan=False))
    else:
        print(report.summary())
    written = ", ".join(sorted(entry.name for entry in folder.iterdir()))
    print(f"report in {folder}: {written}", file=sys.stderr if args.json else sys.stdout)
    return 0
