"""``vitlib convert SOURCE OUTPUT --to FORMAT``: any checkpoint vitlib reads, saved in vitlib's
or another family's format, or exported to ONNX."""

from __future__ import annotations

import argparse
from typing import Any, Final

from vitlib.cli.options import COUNT, add_command

#: What ``--to`` accepts besides the checkpoint formats of the family registry.
EXPORT_FORMATS: Final = ("onnx",)


def register(commands: Any) -> None:
    """Add the subcommand to ``commands`` (the parser's subparsers)."""
    from vitlib.checkpoints.families import FAMILIES, SAVE_FORMATS

    formats = (*SAVE_FORMATS, *EXPORT_FORMATS)
    titles = ", ".join(f"{name} ({FAMILIES[name].title})" for name in SAVE_FORMATS)
    parser = add_command(
        commands,
        "convert",
        run,
        f"convert any supported checkpoint to {', '.join(formats)}",
        "Load a checkpoint of any family and save it as config.json + safetensors "
        f"in the format of one family ({titles}), or export it to ONNX.",
    )
    parser.add_argument("source", help="file, directory, hf-hub:<repo> or torchvision:<name>")
    parser.add_argument(
        "output", help="directory to write (new or empty), or a .onnx file with --to onnx"
    )
    parser.add_argument("--num-heads", type=COUNT, help="when nothing else tells it")
    parser.add_argument(
        "--to",
        "--format",
        dest="format",
        choices=formats,
        default="vitlib",
        help="the format to write",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output")


def run(args: argparse.Namespace) -> int:
    """Load, then save or export."""
    from vitlib.checkpoints import load_pretrained, save_pretrained
    from vitlib.inference.export import check_onnx_target, export_onnx

    if args.format == "onnx":  # a bad output is refused before the checkpoint is loaded
        check_onnx_target(args.output, overwrite=args.overwrite)
    overrides = {} if args.num_heads is None else {"num_heads": args.num_heads}
    model = load_pretrained(args.source, **overrides)
    if args.format == "onnx":
        path = export_onnx(model, args.output, overwrite=args.overwrite)
    else:
        path = save_pretrained(model, args.output, overwrite=args.overwrite, format=args.format)
    print(f"wrote {path} ({model.config.name or 'ViT'}, {args.format} format)")
    return 0
