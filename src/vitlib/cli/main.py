"""The ``vitlib`` command: each subcommand is a module of `vitlib.cli` that registers its options
and its handler; ``main`` dispatches to the handler and turns expected failures into one line.

Run ``vitlib --help`` or ``vitlib <command> --help``; ``python -m vitlib`` is the same.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from vitlib._version import __version__
from vitlib.checkpoints.run_folder import LAST, STATE_FILE
from vitlib.cli import (
    convert,
    demo,
    evaluate,
    finetune,
    predict,
    presets,
    probe,
    summary,
    train,
)
from vitlib.cli.options import DOCS_URL, CommandLineError, HelpFormatter, Parser, docs_url
from vitlib.errors import VitlibError

__all__ = ["build_parser", "main"]

#: The subcommands, in the order ``vitlib --help`` lists them.
COMMANDS = (presets, summary, convert, train, finetune, predict, evaluate, probe, demo)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``vitlib`` command (all subcommands)."""
    return _parsers()[0]


def _parsers() -> tuple[argparse.ArgumentParser, Mapping[str, argparse.ArgumentParser]]:
    """The ``vitlib`` parser, and the parser of each subcommand by name."""
    parser = Parser(
        prog="vitlib",
        description="Vision Transformer blocks: presets, summaries, checkpoints, training, "
        "prediction and evaluation.",
        epilog=f"Documentation: {DOCS_URL}\n"
        f"Each command's options: vitlib COMMAND --help, and {docs_url('cli')}",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vitlib {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
    return parser, commands.choices


#: The exit status after Ctrl-C (SIGINT), as shells report it: 128 + 2.
INTERRUPTED: Final = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vitlib`` command; returns the exit status.

    Expected failures (a command line that does not parse, vitlib's own errors, a missing
    optional extra, operating-system errors such as a missing, read-only or non-directory path,
    a full disk) print one line and return 2; Ctrl-C prints one line (for ``train`` and
    ``finetune``, how to continue the run) and returns 130; any other exception is a bug in
    vitlib and shows its traceback. The error line names the command's switches as typed
    (``--overwrite``), not as the library's keywords (``overwrite=True``). Under ``torchrun``
    only rank 0 shows warnings, so that each shows once.
    """
    prog, args, command = "vitlib", None, None
    try:
        parser, commands = _parsers()
        args = parser.parse_args(argv)
        prog, command = f"vitlib {args.command}", commands[args.command]
        with _warnings_from_main_process_only():
            status: int = args.handler(args)
    except (VitlibError, OSError) as error:  # expected failures; anything else is a bug
        where = error.prog if isinstance(error, CommandLineError) else prog
        print(f"{where}: error: {_as_flags(_one_line(error), command)}", file=sys.stderr)
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


@contextmanager
def _warnings_from_main_process_only() -> Iterator[None]:
    """Under ``torchrun`` every process runs the same command and would print the same warnings
    once each: only rank 0 shows Python's warnings and vitlib's logged warnings (errors still
    show on every rank). A single process shows everything."""
    from vitlib.training.progress import is_main_process

    if is_main_process():
        yield
        return
    vitlib_logger = logging.getLogger("vitlib")
    level = vitlib_logger.level
    vitlib_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        vitlib_logger.setLevel(level)


def _as_flags(message: str, command: argparse.ArgumentParser | None) -> str:
    """``message`` in the words a shell user types: the library's keyword for each of
    ``command``'s switches (what a Python caller passes, ``overwrite=True``) replaced by the
    switch itself (``--overwrite``), and a message that starts with a keyword with an underscore
    (``image_size 97 cannot...``) with its flag (``--image-size 97 cannot...``)."""
    if command is None:
        return message
    for action in command._actions:
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            keyword = rf"\b{re.escape(action.dest)}={not action.default}\b"
            message = re.sub(keyword, action.option_strings[0], message)
        elif action.option_strings and "_" in action.dest:  # a message about this value
            keyword = rf"^{re.escape(action.dest)}\b(?![=/.]\w)"
            message = re.sub(keyword, action.option_strings[0], message)
    return message


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
