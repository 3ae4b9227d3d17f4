"""Rewrite the generated sections of README.md and docs/ from the code.

Each generated section sits between a ``<!-- NAME:start -->`` line and a ``<!-- NAME:end -->``
line, and every file that ``GENERATED`` lists for a section holds exactly one of it. Run
``python tools/sync_docs.py`` after changing presets or counts; ``--check`` changes nothing and
exits 1 when a section is stale, empty or missing (``tests/test_docs.py`` runs it).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from vitlib.analysis.reports import presets_markdown
from vitlib.config import ViTConfig
from vitlib.counting import count_parameters, parameter_breakdown

#: Bytes per parameter of float32 training with AdamW: weight, gradient, two moments.
TRAINING_BYTES_PER_PARAMETER: Final = 16
#: The presets and process counts of the sharded-training table.
SHARDING_PRESETS: Final = ("ViT-B/16", "ViT-L/16", "ViT-H/14")
SHARDING_PROCESSES: Final = (4, 8, 16)


def sharding_memory_markdown() -> str:
    """A Markdown table of the weights, gradients and AdamW state per GPU, DDP against FSDP.

    Float32 training with AdamW keeps 16 bytes per parameter (weight, gradient, two moments):
    ``16 P`` per GPU under DDP, ``16 P / N`` under FSDP on ``N`` GPUs, plus the float32 weights
    and gradients of the block being computed (gathered, then freed). Activations come on top,
    the same under both. Parameters from [`count_parameters`][vitlib.count_parameters] (224x224
    RGB, 1000 classes); GB are 10^9 bytes.
    """
    per_parameter = TRAINING_BYTES_PER_PARAMETER
    lines = [
        "| preset | parameters | DDP, per GPU | "
        + " | ".join(f"FSDP on {n} GPUs" for n in SHARDING_PROCESSES)
        + " | one block in flight (weights + gradients) |",
        "|---|---:|---:|" + "---:|" * len(SHARDING_PROCESSES) + "---:|",
    ]
    for name in SHARDING_PRESETS:
        cfg = ViTConfig.from_preset(name)
        parameters = count_parameters(cfg)
        encoder = next(v for k, v in parameter_breakdown(cfg).items() if "encoder" in k)
        block = encoder // cfg.num_transformer_layers
        cells = [f"{per_parameter * parameters / n / 1e9:.2f} GB" for n in SHARDING_PROCESSES]
        lines.append(
            f"| {name} | {parameters / 1e6:.1f} M | {per_parameter * parameters / 1e9:.2f} GB | "
            + " | ".join(cells)
            + f" | {2 * 4 * block / 1e6:.0f} MB |"
        )
    return "\n".join(lines)


ROOT = Path(__file__).resolve().parents[1]
#: Section name -> (its generator, the files that hold it).
GENERATED: dict[str, tuple[Callable[[], str], tuple[str, ...]]] = {
    "presets-table": (presets_markdown, ("README.md", "docs/presets.md")),
    "sharding-memory": (sharding_memory_markdown, ("docs/training.md",)),
}
FILES = tuple(dict.fromkeys(f for _, files in GENERATED.values() for f in files))


class SectionError(ValueError):
    """A generated section's markers are missing, repeated or out of order."""


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def _find_section(text: str, name: str, where: str) -> tuple[int, int]:
    """The span of the section's content: from after the start line to the end line's start."""
    start, end = _markers(name)
    starts = [m.end() for m in re.finditer(rf"^{re.escape(start)}[ \t]*\n", text, re.MULTILINE)]
    ends = [m.start() for m in re.finditer(rf"^{re.escape(end)}[ \t]*$", text, re.MULTILINE)]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        order = " in the wrong order" if len(starts) == len(ends) == 1 else ""
        raise SectionError(
            f"{where}: expected one line {start!r} followed by one line {end!r}, found "
            f"{len(starts)} start and {len(ends)} end marker line(s){order}; restore the "
            "markers, then run python tools/sync_docs.py."
        )
    return starts[0], ends[0]


def render(text: str, where: str = "text") -> str:
    """Return ``text`` (the file ``where``) with its generated sections replaced by their fresh
    content: those ``GENERATED`` lists for ``where``, every section for any other name.

    Raises:
        SectionError: a section's markers are missing, repeated or out of order in ``text``.
    """
    for name, (make, files) in GENERATED.items():
        if where in FILES and where not in files:
            continue
        content = make().strip("\n")
        if not content.strip():
            raise SectionError(f"the generator of {name!r} returned nothing")
        begin, finish = _find_section(text, name, where)
        text = text[:begin] + content + "\n" + text[finish:]
    return text


def problems(root: Path = ROOT) -> list[str]:
    """One line per file of ``FILES`` under ``root`` whose generated sections are not current."""
    found = []
    for relative in FILES:
        path = root / relative
        try:
            text = path.read_text(encoding="utf-8")
            if render(text, relative) != text:
                found.append(f"{relative}: a generated section is stale or empty")
        except (OSError, SectionError) as error:
            found.append(str(error))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="report, change nothing")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository to work on")
    args = parser.parse_args(argv)
    if args.check:
        found = problems(args.root)
        for line in found:
            print(line, file=sys.stderr)
        if found:
            print("run: python tools/sync_docs.py", file=sys.stderr)
        return 1 if found else 0
    rendered = {}
    for relative in FILES:  # every file first: a broken one leaves all of them untouched
        text = (args.root / relative).read_text(encoding="utf-8")
        try:
            rendered[relative] = (text, render(text, relative))
        except SectionError as error:
            print(error, file=sys.stderr)
            return 1
    for relative, (text, fresh) in rendered.items():
        if fresh != text:
            (args.root / relative).write_text(fresh, encoding="utf-8")
            print(f"updated {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
