"""The ``vitlib`` command; ``python -m vitlib`` is the same."""

from __future__ import annotations

from vitlib.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
