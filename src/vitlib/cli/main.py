"""The ``vitlib`` command: each subcommand is a module of `vitlib.cli` that registers its options
and its handler; ``main`` dispatches to the handler and turns expected failures into one line.

Run ``vitlib --help`` or ``vitlib <command> --help``; ``python -m vitlib`` is the same.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vitlib._version import __version__
from vitlib.cli import convert, evaluate, finetune, predict, presets, summary, train
from vitlib.cli.options import CommandLineError, HelpFormatter, Parser
from vitlib.errors import VitlibError

__all__ = ["build_parser", "main"]

#: The subcommands, in the order ``vitlib --help`` lists them.
COMMANDS = (presets, summary, convert, train, finetune, predict, evaluate)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``vitlib`` command (all subcommands)."""
    parser = Parser(
        prog="vitlib",
        description="Vision Transformer blocks: presets, summaries, checkpoints, training, "
        "prediction and evaluation.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vitlib {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vitlib`` command; returns the exit status.

    Expected failures (a command line that does not parse, vitlib's own errors, a missing
    optional extra, and operating-system errors such as a missing, read-only or non-directory
    path) print one line and return 2; any other exception is a bug in vitlib and shows its
    traceback.
    """
    prog = "vitlib"
    try:
        args = build_parser().parse_args(argv)
        prog = f"vitlib {args.command}"
        status: int = args.handler(args)
    except (VitlibError, OSError) as error:  # expected failures; anything else is a bug
        where = error.prog if isinstance(error, CommandLineError) else prog
        print(f"{where}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    return status


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
