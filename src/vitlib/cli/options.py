"""What the subcommands share: the parser class, the help format, flag types checked by the
library's own checks, and the training options of ``train`` and ``finetune``."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, NoReturn

from vitlib._checks import (
    check_int,
    check_non_negative_int,
    check_number,
    check_positive_float,
    check_positive_int,
    check_rate,
)
from vitlib.data.loaders import max_num_workers
from vitlib.errors import ConfigError, VitlibError

__all__ = [
    "COUNT",
    "NON_NEGATIVE",
    "POSITIVE",
    "RATE",
    "SEED",
    "CommandLineError",
    "HelpFormatter",
    "Parser",
    "add_command",
    "add_training_options",
]


class CommandLineError(ConfigError):
    """The command line does not parse: an unknown flag, a missing argument, a bad value.

    Attributes:
        prog: The (sub)command whose line it is, e.g. ``"vitlib train"``.
    """

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are a `CommandLineError`, so that ``main`` reports
    them as every other failure: one line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        """Raise instead of printing the usage and exiting."""
        raise CommandLineError(self.prog, f"{message} (see {self.prog} --help)")


class HelpFormatter(argparse.HelpFormatter):
    """``--help`` shows each option's default (zeros included) where its text does not; on/off
    switches show none, since their name says what they do."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        switch = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        shown = action.default not in (None, argparse.SUPPRESS) and action.option_strings
        if shown and not switch and "default" not in text:
            text += f" (default: {action.default})" if text else f"default: {action.default}"
        return text


def add_command(
    commands: Any, name: str, handler: Callable[[argparse.Namespace], int], summary: str, about: str
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` to ``commands`` (the parser's subparsers), run by ``handler``;
    ``summary`` is its line in ``vitlib --help``, ``about`` the description of its own help."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, formatter_class=HelpFormatter, help=summary, description=about
    )
    parser.set_defaults(handler=handler)
    return parser


def _flag_type(
    check: Callable[[str, Any], object], convert: Callable[[str], Any], what: str
) -> Callable[[str], Any]:
    """An argparse ``type``: ``convert`` the text, then run the library's ``check`` on it, so a
    flag refuses what its API twin refuses, with the same words."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        try:
            check("value", value)
        except VitlibError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix("value ")) from None
        return value

    parse.__name__ = what
    return parse


#: An int >= 1: counts and sizes (epochs, batch size, top-k...).
COUNT: Final = _flag_type(check_positive_int, int, "an int >= 1")
#: An int >= 0 (warmup steps, workers...).
NON_NEGATIVE: Final = _flag_type(check_non_negative_int, int, "an int >= 0")
#: A finite number > 0 (learning rate, position std...).
POSITIVE: Final = _flag_type(check_positive_float, float, "a finite number > 0")
#: A number in [0, 1) (dropout, label smoothing...).
RATE: Final = _flag_type(check_rate, float, "a number in [0, 1)")
#: A seed: an int in [0, 2**32).
SEED: Final = _flag_type(
    lambda name, value: check_int(name, value, minimum=0, maximum=2**32 - 1),
    int,
    "an int from 0 to 4294967295",
)


#: A number of loader workers, as ``make_dataloaders`` accepts it.
WORKERS: Final = _flag_type(
    lambda name, value: check_int(name, value, minimum=0, maximum=max_num_workers()),
    int,
    "an int >= 0",
)


def add_training_options(parser: argparse.ArgumentParser, defaults: Mapping[str, Any]) -> None:
    """The options ``train`` and ``finetune`` share, with each command's ``defaults`` (by
    option name: ``epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``warmup_steps``,
    ``label_smoothing``, ``seed``, ``output_dir``)."""
    run = parser.add_argument_group("training")
    run.add_argument(
        "--epochs", type=COUNT, default=defaults["epochs"], help="epochs of the whole run"
    )
    run.add_argument(
        "--batch-size", type=COUNT, default=defaults["batch_size"], help="images per step"
    )
    run.add_argument("--lr", type=POSITIVE, default=defaults["lr"], help="peak learning rate")
    run.add_argument(
        "--weight-decay",
        type=_flag_type(
            lambda name, value: check_number(name, value, low=0.0), float, "a finite number >= 0"
        ),
        default=defaults["weight_decay"],
        help="decoupled weight decay on weight matrices",
    )
    run.add_argument(
        "--warmup-steps",
        type=NON_NEGATIVE,
        default=defaults["warmup_steps"],
        help="linear warmup; at most half of the run",
    )
    run.add_argument(
        "--label-smoothing",
        type=RATE,
        default=defaults["label_smoothing"],
        help="label smoothing of the training loss",
    )
    run.add_argument("--max-steps", type=COUNT, help="stop after this many optimiser steps")
    run.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    run.add_argument(
        "--seed", type=SEED, default=defaults["seed"], help="weights, order, augmentation"
    )
    run.add_argument(
        "--num-workers", type=WORKERS, default=0, help="loader processes; 0 loads in this one"
    )
    run.add_argument("--no-progress", action="store_true", help="no per-batch progress")
    output = parser.add_argument_group("the run directory")
    output.add_argument(
        "--output-dir", type=Path, default=defaults["output_dir"], help="where the run is saved"
    )
    output.add_argument("--overwrite", action="store_true", help="replace the run in --output-dir")
    output.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
