"""Fine-tune a pretrained ViT as the learnpytorch.io chapter does: frozen backbone, new head.

This is ``vitlib finetune`` (installed with the package) as a script; the recipe lives in
``vitlib.training.finetune``. Any checkpoint that ``vitlib.load_pretrained`` reads works
(torchvision, timm, Hugging Face, Google ``.npz``, the chapter's own, a vitlib run directory).

Examples::

    # the chapter's setup: torchvision's ViT-B/16 on a Sports-Mini style folder
    python examples/finetune.py --checkpoint torchvision:vit_b_16 --data data/sports_mini
    # offline: fine-tune the head of a from-scratch digits run (vitlib train) on the digits
    python examples/finetune.py --checkpoint runs/digits --epochs 3   # into runs/digits-finetune
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from vitlib.cli import main as vitlib_main


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``vitlib finetune`` with ``argv``; return the exit status."""
    return vitlib_main(["finetune", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
