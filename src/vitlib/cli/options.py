"""What the subcommands share: the parser class, the help format, the URLs of the published
docs that each help points to, flag types checked by the library's own checks, and the training
options of ``train`` and ``finetune``."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, NoReturn

from vitlib._checks import (
    check_int,
    check_non_negative_int,
    check_number,
    check_positive_float,
    check_positive_int,
    check_rate,
)
from vitlib.data.loaders import MAX_AUTO_DECODE_WORKERS, max_num_workers
from vitlib.errors import ConfigError, VitlibError

__all__ = [
    "COUNT",
    "DOCS_URL",
    "GUIDES",
    "NON_NEGATIVE",
    "POSITIVE",
    "RATE",
    "SEED",
    "CommandLineError",
    "DataDependent",
    "HelpFormatter",
    "Parser",
    "add_command",
    "add_inference_options",
    "add_training_options",
    "docs_url",
    "flag_type",
]

#: The published documentation, mkdocs.yml's ``site_url``: the help texts point there, since a
#: ``pip install`` has no docs/ folder (tests/test_cli_help.py keeps the two equal).
DOCS_URL: Final = "https://vitlib.github.io/vitlib/"

#: The guide of each subcommand: the docs page (docs/<page>.md) that explains what it does.
GUIDES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "presets": "presets",
        "summary": "presets",
        "convert": "pretrained",
        "train": "training",
        "finetune": "finetuning",
        "predict": "predict",
        "evaluate": "predict",
        "probe": "probe",
        "demo": "demo",
    }
)


def docs_url(page: str = "index") -> str:
    """The published URL of the docs page ``docs/<page>.md``, e.g. ``docs_url("training")``:
    ``<page>/`` below `DOCS_URL` (MkDocs' directory URLs); the home page is `DOCS_URL` itself."""
    return DOCS_URL if page == "index" else f"{DOCS_URL}{page}/"


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
    """``--help`` shows each option's default, zeros and empty values included, unless it has
    none (``None``: its text says what happens then). An on/off switch shows the flag that is
    in force by default (``--x/--no-x``) or nothing (``--x`` alone, off unless given), never a
    bare ``True`` or ``False``, which reads backwards beside a ``--no-...`` flag. Lines break
    between words only, never inside a flag or a URL."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(_one_spaced(text), width, **_WHOLE_WORDS)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        """Fill each line of ``text`` on its own: a description or epilog keeps its line breaks."""
        return "\n".join(
            textwrap.fill(
                _one_spaced(line),
                width,
                initial_indent=indent,
                subsequent_indent=indent,
                **_WHOLE_WORDS,
            )
            for line in text.splitlines()
        )

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if isinstance(action, argparse.BooleanOptionalAction):
            # Python < 3.13 appends its own "(default: True)"; name the flag in force instead.
            text = text.replace(" (default: %(default)s)", "")
            if action.default is None or action.default is argparse.SUPPRESS:
                return text
            on, off = action.option_strings[0], action.option_strings[-1]
            return _with_default(text, on if action.default else off)
        switch = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        if switch or not action.option_strings or "%(default)" in text:
            return text
        if action.default is None or action.default is argparse.SUPPRESS:
            return text
        return _with_default(text, _shown_default(action.default))


#: Help lines break between words only: never inside a flag (``--output-dir``) or a URL.
_WHOLE_WORDS: Final[dict[str, Any]] = {"break_long_words": False, "break_on_hyphens": False}


def _one_spaced(text: str) -> str:
    return " ".join(text.split())


def _shown_default(value: object) -> str:
    """A default as ``--help`` shows it: as typed on the command line, ``''`` for empty text."""
    if isinstance(value, str) and not value.strip():
        return repr(value)
    if isinstance(value, (list, tuple)):
        return " ".join(str(item) for item in value)
    return str(value)


def _with_default(text: str, shown: str) -> str:
    # argparse %-formats help texts: a literal "%" in a default (a path) must be doubled.
    shown = shown.replace("%", "%%")
    return f"{text} (default: {shown})" if text else f"default: {shown}"


def add_command(
    commands: Any, name: str, handler: Callable[[argparse.Namespace], int], summary: str, about: str
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` to ``commands`` (the parser's subparsers), run by ``handler``;
    ``summary`` is its line in ``vitlib --help``, ``about`` the description of its own help,
    which ends with the URLs of its guide (`GUIDES`) and of the command-line page."""
    links = [f"Guide: {docs_url(GUIDES[name])}"] if name in GUIDES else []
    links.append(f"Every command and option: {docs_url('cli')}")
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        formatter_class=HelpFormatter,
        help=summary,
        description=about,
        epilog="\n".join(links),
    )
    parser.set_defaults(handler=handler)
    return parser


def flag_type(
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
COUNT: Final = flag_type(check_positive_int, int, "an int >= 1")
#: An int >= 0 (warmup steps, workers...).
NON_NEGATIVE: Final = flag_type(check_non_negative_int, int, "an int >= 0")
#: A finite number > 0 (learning rate, position std...).
POSITIVE: Final = flag_type(check_positive_float, float, "a finite number > 0")
#: A number in [0, 1) (dropout, label smoothing...).
RATE: Final = flag_type(check_rate, float, "a number in [0, 1)")
#: A seed: an int in [0, 2**32).
SEED: Final = flag_type(
    lambda name, value: check_int(name, value, minimum=0, maximum=2**32 - 1),
    int,
    "an int from 0 to 4294967295",
)


#: A number of loader workers, as ``make_dataloaders`` accepts it.
WORKERS: Final = flag_type(
    lambda name, value: check_int(name, value, minimum=0, maximum=max_num_workers()),
    int,
    "an int >= 0",
)


@dataclass(frozen=True)
class DataDependent:
    """A default the command chooses from its data; ``text`` says how, for ``--help``."""

    text: str


def add_training_options(parser: argparse.ArgumentParser, defaults: Mapping[str, Any]) -> None:
    """The options ``train`` and ``finetune`` share, with each command's ``defaults`` (by
    option name: ``epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``warmup_steps``,
    ``label_smoothing``, ``max_steps``, ``seed``, ``output_dir``). A default given as
    `DataDependent` leaves the option at ``None`` for the command to fill from its data, and
    ``--help`` says how."""
    run = parser.add_argument_group("training")
    output = parser.add_argument_group("the run directory")

    def add(flag: str, name: str, help_text: str, group: Any = run, **options: Any) -> None:
        default = defaults[name]
        if isinstance(default, DataDependent):
            options["help"] = f"{help_text} (default: {default.text})"
            default = None
        else:
            options["help"] = help_text
        group.add_argument(flag, default=default, **options)

    add("--epochs", "epochs", "epochs of the whole run", type=COUNT)
    add("--batch-size", "batch_size", "images per step", type=COUNT)
    add("--lr", "lr", "peak learning rate", type=POSITIVE)
    run.add_argument(
        "--weight-decay",
        type=flag_type(
            lambda name, value: check_number(name, value, low=0.0), float, "a finite number >= 0"
        ),
        default=defaults["weight_decay"],
        help="decoupled weight decay on weight matrices",
    )
    add(
        "--warmup-steps",
        "warmup_steps",
        "linear warmup; at most half of the run",
        type=NON_NEGATIVE,
    )
    run.add_argument(
        "--label-smoothing",
        type=RATE,
        default=defaults["label_smoothing"],
        help="label smoothing of the training loss",
    )
    add(
        "--max-steps",
        "max_steps",
        "stop after this many optimiser steps",
        type=COUNT,
    )
    run.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    run.add_argument(
        "--seed", type=SEED, default=defaults["seed"], help="weights, order, augmentation"
    )
    run.add_argument(
        "--num-workers", type=WORKERS, default=0, help="loader processes; 0 loads in this one"
    )
    run.add_argument("--no-progress", action="store_true", help="no per-batch progress")
    add("--output-dir", "output_dir", "where the run is saved", output, type=Path)
    output.add_argument("--overwrite", action="store_true", help="replace the run in --output-dir")
    output.add_argument("--resume", action="store_true", help="continue the run in --output-dir")


def add_inference_options(parser: argparse.ArgumentParser) -> None:
    """The options ``predict`` and ``evaluate`` share: ``--strict``, ``--precision`` and
    ``--num-workers``."""
    parser.add_argument(
        "--strict", action="store_true", help="stop at an unreadable image instead of skipping it"
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16", "int8"),
        default="fp32",
        help="run the model's inference copy (vitlib.optimize_for_inference) in this precision: "
        "int8 is several times faster on most CPUs, bf16 on CPUs with bf16 units",
    )
    parser.add_argument(
        "--num-workers",
        type=WORKERS,
        default=None,
        help="processes decoding image files while the model runs, 0 for none (default: one "
        f"per CPU, up to {MAX_AUTO_DECODE_WORKERS}, when the images fill more than one batch)",
    )
