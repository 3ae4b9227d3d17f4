"""The ``vitlib`` command: each subcommand is a module of `vitlib.cli` that registers its options
and its handler; ``main`` dispatches to the handler and turns expected failures into one line.

Run ``vitlib --help`` or ``vitlib <command> --help``; ``python -m vitlib`` is the same.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from vitlib._version import __version__
from vitlib.checkpoints.run_folder import LAST, STATE_FILE
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


#: The exit status after Ctrl-C (SIGINT), as shells report it: 128 + 2.
INTERRUPTED: Final = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vitlib`` command; returns the exit status.

    Expected failures (a command line that does not parse, vitlib's own errors, a missing
    optional extra, operating-system errors such as a missing, read-only or non-directory path,
    a full disk) print one line and return 2; Ctrl-C prints one line (for ``train`` and
    ``finetune``, how to continue the run) and returns 130; any other exception is a bug in
    vitlib and shows its traceback.
    """
    prog, args = "vitlib", None
    try:
        args = build_parser().parse_args(argv)
        prog = f"vitlib {args.command}"
        status: int = args.handler(args)
    except (VitlibError, OSError) as error:  # expected failures; anything else is a bug
        where = error.prog if isinstance(error, CommandLineError) else prog
        print(f"{where}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted{_resume_hint(args)}", file=sys.stderr)
        return INTERRUPTED
    return status


def _resume_hint(args: argparse.Namespace | None) -> str:
    """How to continue a training command cut off by Ctrl-C: ``--resume``, if it saved an
    epoch (its saves are atomic, so the last one is whole)."""
    output_dir = getattr(args, "output_dir", None)
    if args is None or not hasattr(args, "resume") or not isinstance(output_dir, Path):
        return ""
    if (output_dir / LAST / STATE_FILE).is_file():
        return (
            f"; the run in {output_dir} keeps its last complete epoch: continue it with the same "
            f"command and --resume (without --overwrite)"
        )
    return f"; no epoch of the run in {output_dir} was saved yet"


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
