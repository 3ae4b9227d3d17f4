"""The ``vitlib`` command: ``presets``, ``summary``, ``convert``, ``train``, ``finetune``,
``predict`` and ``evaluate``.

Run ``vitlib --help`` or ``vitlib <command> --help``; ``python -m vitlib`` is the same.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vitlib._version import __version__
from vitlib.config import ViTConfig
from vitlib.errors import VitlibError

__all__ = ["DefaultsHelpFormatter", "build_parser", "main"]


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """``--help`` shows each option's default, where it has one that its text does not name."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        shown = default not in (None, False, argparse.SUPPRESS) and action.option_strings
        if shown and "default" not in text and not isinstance(action, argparse._VersionAction):
            text += f" (default: {default})" if text else f"default: {default}"
        return text


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``vitlib`` command (all subcommands)."""
    parser = argparse.ArgumentParser(
        prog="vitlib",
        description="Vision Transformer blocks: presets, summaries, checkpoints, training.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vitlib {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser(
        "presets",
        formatter_class=DefaultsHelpFormatter,
        help="list the presets with exact parameters and FLOPs",
        description="The published presets beside Table 1 (224x224 RGB, 1000 classes).",
    )

    summary = commands.add_parser(
        "summary",
        formatter_class=DefaultsHelpFormatter,
        help="per-layer table of a preset: output shapes, parameters, trainable",
        description="Summarise a preset without allocating its weights (meta device).",
    )
    summary.add_argument("preset", help="e.g. ViT-B/16, vit_b_16, vit_base_patch16_384")
    summary.add_argument("--num-classes", type=int, default=None, help="default: the preset's")
    summary.add_argument("--img-size", type=int, default=None, help="default: the preset's")
    summary.add_argument("--in-channels", type=int, default=None, help="default: the preset's")
    summary.add_argument("--depth", type=int, default=2, help="module levels shown (default 2)")

    convert = commands.add_parser(
        "convert",
        formatter_class=DefaultsHelpFormatter,
        help="convert any supported checkpoint to vitlib's (or Hugging Face's) format",
        description="Load a checkpoint of any family and save it as config.json + safetensors.",
    )
    convert.add_argument("source", help="file, directory, hf-hub:<repo> or torchvision:<name>")
    convert.add_argument(
        "output", help="directory to write (new or empty), or a .onnx file with --to onnx"
    )
    convert.add_argument("--num-heads", type=int, default=None, help="when nothing else tells it")
    convert.add_argument(
        "--to",
        "--format",
        dest="format",
        choices=("vitlib", "huggingface", "onnx"),
        default="vitlib",
        help="vitlib's or Hugging Face's safetensors folder, or an ONNX file (default vitlib)",
    )
    convert.add_argument("--overwrite", action="store_true", help="replace a non-empty output")

    train = commands.add_parser(
        "train",
        formatter_class=DefaultsHelpFormatter,
        help="train a ViT from scratch (digits by default, or an image folder)",
        description="Train a ViT from scratch; see docs/training.md.",
    )
    from vitlib.training.recipe import add_train_arguments

    add_train_arguments(train)
    finetune = commands.add_parser(
        "finetune",
        formatter_class=DefaultsHelpFormatter,
        help="fine-tune a pretrained ViT's new head on your images (the chapter's recipe)",
        description="Fine-tune a pretrained ViT: frozen backbone, new head; see "
        "docs/finetuning.md.",
    )
    from vitlib.training.finetune import add_finetune_arguments

    add_finetune_arguments(finetune)
    _add_predict_parser(commands)
    _add_evaluate_parser(commands)
    return parser


def _add_evaluate_parser(commands: Any) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        formatter_class=DefaultsHelpFormatter,
        help="accuracy, top-5, per-class P/R/F1, confusion matrix and mistakes of a model",
        description="Evaluate a run or checkpoint on labelled images; write a JSON report, "
        "confusion_matrix.png and mistakes.png.",
    )
    evaluate.add_argument(
        "model",
        metavar="RUN_OR_CHECKPOINT",
        help="a run folder (its best/), a checkpoint folder or file, hf-hub:<repo>...",
    )
    evaluate.add_argument(
        "--data",
        required=True,
        help="'digits', or a folder of class folders (DIR/<class>/<images>, or DIR/test/...)",
    )
    evaluate.add_argument(
        "--output-dir", type=Path, default=Path("evaluation"), help="where the report goes"
    )
    evaluate.add_argument("--overwrite", action="store_true", help="replace --output-dir's report")
    evaluate.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    evaluate.add_argument("--mistakes", type=int, default=16, help="most confident mistakes drawn")
    evaluate.add_argument("--json", action="store_true", help="print the JSON report")
    evaluate.add_argument(
        "--strict", action="store_true", help="stop at an unreadable image instead of skipping it"
    )


def _add_predict_parser(commands: Any) -> None:
    predict = commands.add_parser(
        "predict",
        formatter_class=DefaultsHelpFormatter,
        help="classify your own images with a trained model (its labels and preprocessing)",
        description="Classify images with a run or checkpoint, prepared as its test set was.",
    )
    predict.add_argument(
        "model",
        metavar="RUN_OR_CHECKPOINT",
        help="a run folder (its best/), a checkpoint folder or file, hf-hub:<repo>...",
    )
    predict.add_argument(
        "images", metavar="IMAGE", nargs="+", type=Path, help="image files, or folders of them"
    )
    predict.add_argument("--top-k", type=int, default=5, help="classes shown per image")
    predict.add_argument("--batch-size", type=int, default=32, help="images per forward pass")
    predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
    predict.add_argument(
        "--plot",
        type=Path,
        metavar="OUT.png",
        help="draw the images titled with their prediction (first 16)",
    )
    predict.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    predict.add_argument(
        "--strict", action="store_true", help="stop at an unreadable image instead of skipping it"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vitlib`` command; returns the exit status.

    Expected failures (vitlib's own errors, a missing optional extra, and operating-system errors
    such as a missing, read-only or non-directory path) print one line and return 2; any other
    exception is a bug in vitlib and shows its traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        if args.command == "presets":
            from vitlib.analysis.reports import presets_markdown

            print(presets_markdown())
        elif args.command == "summary":
            from vitlib.analysis.summary import summary

            overrides = {
                key: value
                for key, value in (
                    ("num_classes", args.num_classes),
                    ("img_size", args.img_size),
                    ("in_channels", args.in_channels),
                )
                if value is not None
            }
            print(summary(ViTConfig.from_preset(args.preset, **overrides), depth=args.depth))
        elif args.command == "convert":
            from vitlib.checkpoints import load_pretrained, save_pretrained

            overrides = {} if args.num_heads is None else {"num_heads": args.num_heads}
            model = load_pretrained(args.source, **overrides)
            if args.format == "onnx":
                from vitlib.inference.export import export_onnx

                path = export_onnx(model, args.output, overwrite=args.overwrite)
            else:
                path = save_pretrained(
                    model, args.output, overwrite=args.overwrite, format=args.format
                )
            print(f"wrote {path} ({model.config.name or 'ViT'}, {args.format} format)")
        elif args.command == "predict":
            return _predict(args)
        elif args.command == "evaluate":
            return _evaluate(args)
        elif args.command == "finetune":
            from vitlib.training.finetune import run_finetune

            return run_finetune(args)
        else:
            from vitlib.training.recipe import run_from_args

            return run_from_args(args)
    except (VitlibError, OSError) as error:  # expected failures; anything else is a bug
        print(f"vitlib {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    return 0


_PLOTTED_IMAGES = 16


def _image_paths(arguments: Sequence[Path]) -> list[Path]:
    """The image paths: files as given, folders expanded to the images below them (sorted)."""
    from vitlib.data.image_folder import IMAGE_EXTENSIONS

    paths: list[Path] = []
    for argument in arguments:
        if argument.is_dir():
            paths += sorted(
                path
                for path in argument.rglob("*")
                if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
            )
        else:
            paths.append(argument)
    return paths


def _predict(args: argparse.Namespace) -> int:
    from vitlib.inference.predict import run_predictions

    if args.plot is not None:  # before any work: refuse to replace a file silently
        _check_plot_path(args.plot, args.overwrite)
    run = run_predictions(
        args.model,
        _image_paths(args.images),
        top_k=_positive("--top-k", args.top_k),
        batch_size=_positive("--batch-size", args.batch_size),
        strict=args.strict,
        keep_inputs=_PLOTTED_IMAGES if args.plot is not None else 0,
    )
    for skipped in run.skipped:
        print(f"vitlib predict: skipped {skipped.source}: {skipped.reason}", file=sys.stderr)
    if args.json:
        report = {
            "predictions": [prediction.to_dict() for prediction in run.predictions],
            "skipped": [{"source": s.source, "reason": s.reason} for s in run.skipped],
        }
        print(json.dumps(report, indent=2))
    else:
        for prediction in run.predictions:
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
    if args.plot is not None and run.inputs and run.preprocessing is not None:
        import torch

        from vitlib.analysis.plots import plot_image_predictions

        shown = run.predictions[: len(run.inputs)]
        out = plot_image_predictions(
            torch.stack(run.inputs),
            [prediction.label for prediction in shown],
            [prediction.probability for prediction in shown],
            args.plot,
            mean=run.preprocessing.mean,
            std=run.preprocessing.std,
            overwrite=args.overwrite,
        )
        print(f"plot: {out}", file=sys.stderr if args.json else sys.stdout)
    if not run.predictions:
        print("vitlib predict: error: no readable image among those given", file=sys.stderr)
        return 2
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from vitlib.checkpoints.atomic import recover_interrupted_save
    from vitlib.errors import ConfigError
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
        batch_size=_positive("--batch-size", args.batch_size),
        max_mistakes=max(0, args.mistakes),
        strict=args.strict,
    )
    folder = report.save(out, overwrite=args.overwrite)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.summary())
    written = ", ".join(sorted(entry.name for entry in folder.iterdir()))
    print(f"report in {folder}: {written}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _positive(flag: str, value: int) -> int:
    from vitlib.errors import ConfigError

    if value < 1:
        raise ConfigError(f"{flag} {value} is invalid; expected an integer >= 1.")
    return value


def _check_plot_path(path: Path, overwrite: bool) -> None:
    from vitlib.errors import ConfigError

    if path.suffix.lower() != ".png":
        raise ConfigError(f"--plot {path} must end in .png; give e.g. --plot predictions.png")
    if path.exists() and not overwrite:
        raise ConfigError(f"--plot {path} already exists; pass --overwrite to replace it")


def _one_line(error: Exception) -> str:
    """The message of ``error`` on one line, without the ``[Errno N]`` prefix of OS errors."""
    message = str(error)
    if isinstance(error, OSError) and error.strerror:
        message = error.strerror
        if error.filename is not None and str(error.filename) not in message:
            message += f": {error.filename}"
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
