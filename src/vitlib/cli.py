"""The ``vitlib`` command: ``presets``, ``summary``, ``convert`` and ``train``.

Run ``vitlib --help`` or ``vitlib <command> --help``; ``python -m vitlib`` is the same.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._version import __version__
from .config import ViTConfig
from .errors import VitlibError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``vitlib`` command (all subcommands)."""
    parser = argparse.ArgumentParser(
        prog="vitlib",
        description="Vision Transformer blocks: presets, summaries, checkpoints, training.",
    )
    parser.add_argument("--version", action="version", version=f"vitlib {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser(
        "presets",
        help="list the presets with exact parameters and FLOPs",
        description="The published presets beside Table 1 (224x224 RGB, 1000 classes).",
    )

    summary = commands.add_parser(
        "summary",
        help="per-layer table of a preset: output shapes, parameters, trainable",
        description="Summarise a preset without allocating its weights (meta device).",
    )
    summary.add_argument("preset", help="e.g. ViT-B/16, vit_b_16, vit_base_patch16_384")
    summary.add_argument("--num-classes", type=int, default=None)
    summary.add_argument("--img-size", type=int, default=None)
    summary.add_argument("--in-channels", type=int, default=None)
    summary.add_argument("--depth", type=int, default=2, help="module levels shown (default 2)")

    convert = commands.add_parser(
        "convert",
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
        help="train a ViT from scratch (digits by default, or an image folder)",
        description="Train a ViT from scratch; see docs/training.md.",
    )
    from .training.recipe import add_train_arguments

    add_train_arguments(train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vitlib`` command; returns the exit status.

    Expected failures (vitlib's own errors, a missing optional extra, and operating-system errors
    such as a missing, read-only or non-directory path) print one line and return 2; any other
    exception is a bug in vitlib and shows its traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        if args.command == "presets":
            from .reports import presets_markdown

            print(presets_markdown())
        elif args.command == "summary":
            from .summary import summary

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
            from .checkpoints import load_pretrained, save_pretrained

            overrides = {} if args.num_heads is None else {"num_heads": args.num_heads}
            model = load_pretrained(args.source, **overrides)
            if args.format == "onnx":
                from .export import export_onnx

                path = export_onnx(model, args.output, overwrite=args.overwrite)
            else:
                path = save_pretrained(
                    model, args.output, overwrite=args.overwrite, format=args.format
                )
            print(f"wrote {path} ({model.config.name or 'ViT'}, {args.format} format)")
        else:
            from .training.recipe import run_from_args

            return run_from_args(args)
    except (VitlibError, OSError) as error:  # expected failures; anything else is a bug
        print(f"vitlib {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    return 0


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
