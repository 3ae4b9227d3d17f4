"""Train a ViT from scratch: the embedded 8x8 digits by default, or a Sports-Mini style folder.

The ``vitlib train`` command as a script; the work is done by :mod:`vitlib.training.recipe`
(data, model, :func:`vitlib.training.fit`, plots). ``best/`` is chosen on a validation split
(``DATA/valid/``, else ``--val-split`` of ``train/``) and the test split is evaluated once, at
the end. The run directory (``--output-dir``, default ``runs/<data name>``: ``runs/digits``,
numbered ``-2``, ``-3``... when taken) receives ``last/`` and ``best/`` checkpoints,
``history.json``, ``settings.json``, the loss/accuracy curves (``history.png``) and a grid of
test predictions (``predictions.png``); the plots need matplotlib (``vitlib[plots]``).

Examples::

    python examples/train_from_scratch.py                       # digits, into runs/digits
    python examples/train_from_scratch.py --resume --epochs 30  # continue that run
    python examples/train_from_scratch.py --data data/sports_mini   # into runs/sports_mini
    torchrun --nproc_per_node 2 examples/train_from_scratch.py --output-dir runs/ddp
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vitlib.cli import build_parser
from vitlib.cli import main as vitlib_main
from vitlib.training.recipe import resolve_defaults


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line of ``vitlib train``, with the data-dependent defaults filled in."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    return resolve_defaults(build_parser().parse_args(["train", *arguments]))


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``vitlib train`` with ``argv``; return the exit status (2 and one line for an
    expected failure: a run in the way, a bad option, a path that cannot be written...)."""
    return vitlib_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
