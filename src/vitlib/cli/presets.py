"""``vitlib presets``: the published presets beside Table 1, with exact parameters and FLOPs."""

from __future__ import annotations

import argparse
from typing import Any

from vitlib.cli.options import add_command


def register(commands: Any) -> None:
    """Add the subcommand to ``commands`` (the parser's subparsers)."""
    add_command(
        commands,
        "presets",
        run,
        "list the presets with exact parameters and FLOPs",
        "The published presets beside Table 1 (224x224 RGB, 1000 classes).",
    )


def run(args: argparse.Namespace) -> int:
    """Print the table."""
    from vitlib.analysis.reports import presets_markdown

    print(presets_markdown())
    return 0
