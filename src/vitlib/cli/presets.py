"""``vitlib presets``: the published presets beside Table 1, with exact parameters and FLOPs."""

from __future__ import annotations

import argparse
from typing import Any

from vitlib.cli.options import HelpFormatter


def register(commands: Any) -> None:
    """Add the subcommand to ``commands`` (the parser's subparsers)."""
    parser = commands.add_parser(
        "presets",
        formatter_class=HelpFormatter,
        help="list the presets with exact parameters and FLOPs",
        description="The published presets beside Table 1 (224x224 RGB, 1000 classes).",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the table."""
    from vitlib.analysis.reports import presets_markdown

    print(presets_markdown())
    return 0
