"""Rewrite the generated sections of README.md and docs/ from the code.

Each generated section sits between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``; a test
fails when one is stale. Run ``python tools/sync_docs.py`` after changing presets or counts.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from vitlib.reports import presets_markdown

ROOT = Path(__file__).resolve().parents[1]
GENERATED = {"presets-table": presets_markdown}
FILES = ("README.md", "docs/presets.md")


def render(text: str) -> str:
    """Return ``text`` with every generated section replaced by its fresh content."""
    for name, make in GENERATED.items():
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(\n<!-- {name}:end -->)", re.DOTALL)
        text = pattern.sub(lambda match, make=make: match.group(1) + make() + match.group(2), text)
    return text


def main() -> int:
    for relative in FILES:
        path = ROOT / relative
        text = path.read_text(encoding="utf-8")
        fresh = render(text)
        if fresh != text:
            path.write_text(fresh, encoding="utf-8")
            print(f"updated {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
