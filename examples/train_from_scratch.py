"""Train a ViT from scratch: the embedded 8x8 digits by default, or a Sports-Mini style folder.

The same as the ``vitlib train`` command; the work is done by :mod:`vitlib.training.recipe`
(data, model, :func:`vitlib.training.fit`, plots). The run directory (``--output-dir``, default
``runs/from_scratch``) receives ``last/`` and ``best/`` checkpoints, ``history.json``, the
loss/accuracy curves (``history.png``) and a grid of test predictions (``predictions.png``); the
plots need matplotlib (``vitlib[plots]``).

Examples::

    python examples/train_from_scratch.py                       # digits, ~95 s on 2 cores
    python examples/train_from_scratch.py --resume --epochs 30  # continue the same run
    python examples/train_from_scratch.py --data data/sports_mini --preset ViT-Ti/16 \\
        --image-size 224 --batch-size 32 --epochs 10 --output-dir runs/sports_mini
    torchrun --nproc_per_node 2 examples/train_from_scratch.py --output-dir runs/ddp
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vitlib.errors import VitlibError
from vitlib.training.recipe import add_train_arguments, resolve_defaults, run_from_args


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line, with the data-dependent defaults filled in."""
    parser = argparse.ArgumentParser(
        description="Train a Vision Transformer from scratch (digits or an image folder).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_train_arguments(parser)
    return resolve_defaults(parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example; return the exit status (2 and one line for an expected failure: a run in
    the way, a bad option or checkpoint, a path that cannot be written...)."""
    try:
        return run_from_args(parse_args(argv))
    except (VitlibError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
