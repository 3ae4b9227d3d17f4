"""Fine-tune a pretrained ViT as the learnpytorch.io chapter does: frozen backbone, new head.

Any checkpoint that ``vitlib.load_pretrained`` reads works (torchvision, timm, Hugging Face,
Google ``.npz``, the chapter's own, a vitlib run directory); the head is replaced for the data's
classes, and the image size and channel count are adapted to the data at load time.

Examples::

    # the chapter's setup: torchvision's ViT-B/16 on a Sports-Mini style folder
    python examples/finetune.py --checkpoint torchvision:vit_b_16 --data data/sports_mini
    # offline: fine-tune the head of a from-scratch digits run on the digits
    python examples/finetune.py --checkpoint runs/from_scratch/best --epochs 3

The run directory (``--output-dir``) receives ``last/``, ``best/``, ``history.json`` and, with
matplotlib, ``history.png``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

import vitlib
from vitlib.data import DigitsDataset, load_image_folders, make_dataloaders
from vitlib.errors import VitlibError
from vitlib.training import fit


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Fine-tune a pretrained ViT: frozen backbone, new head.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--checkpoint", required=True, help="path, hf-hub:<repo> or torchvision:<name>"
    )
    parser.add_argument("--data", type=Path, help="folder with train/ and test/; default: digits")
    parser.add_argument("--image-size", type=int, help="default: the checkpoint's")
    parser.add_argument("--num-heads", type=int, help="only if nothing else tells it")
    parser.add_argument("--unfreeze-last", type=int, default=0, help="also train the last N blocks")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3, help="the chapter's Adam learning rate")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output-dir", type=Path, default=Path("runs/finetune"))
    parser.add_argument("--overwrite", action="store_true", help="replace the run in --output-dir")
    return parser.parse_args(argv)


def load_data(
    data: Path | None, image_size: int
) -> tuple[Dataset[Any], Dataset[Any], list[str], int]:
    """``(train, test, class_names, channels)``: the image folders, or the embedded digits."""
    if data is None:
        train = DigitsDataset("train", image_size=image_size)
        return train, DigitsDataset("test", image_size=image_size), train.classes, 1
    train_folder, test_folder = load_image_folders(data, image_size=image_size)
    return train_folder, test_folder, train_folder.classes, 3


def freeze_backbone(model: vitlib.ViT, unfreeze_last: int) -> None:
    """Train only the head (and the last ``unfreeze_last`` encoder blocks and the final norm)."""
    for parameter in model.parameters():
        parameter.requires_grad = False
    trainable = [model.head]
    if unfreeze_last:
        trainable += [model.norm, *list(model.transformer_encoder)[-unfreeze_last:]]
    for module in trainable:
        for parameter in module.parameters():
            parameter.requires_grad = True


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example; return the exit status (2 and one line for an expected failure)."""
    args = parse_args(argv)
    try:
        return finetune(args)
    except (VitlibError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def finetune(args: argparse.Namespace) -> int:
    """Load the checkpoint, adapt it to the data, train the head; return 0."""
    torch.manual_seed(args.seed)
    pretrained = vitlib.load_pretrained(args.checkpoint, **_heads(args))
    image_size = args.image_size or pretrained.config.image_hw[0]
    train_set, test_set, class_names, channels = load_data(args.data, image_size)
    model = vitlib.load_pretrained(  # a copy of the pretrained model, adapted to the data:
        pretrained,
        num_classes=len(class_names),  # a new head (a warning says it is untrained)
        img_size=image_size,  # position embeddings resampled if the size differs
        in_channels=channels,  # patch kernel adapted, e.g. RGB -> gray for the digits
    )
    freeze_backbone(model, args.unfreeze_last)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f"{args.checkpoint}: {vitlib.count_parameters(model.config):,} parameters, "
        f"{trainable:,} trainable; {len(class_names)} classes, {image_size}px"
    )
    train_loader, test_loader = make_dataloaders(
        train_set, test_set, args.batch_size, seed=args.seed
    )
    history = fit(
        model,
        train_loader,
        test_loader,
        epochs=args.epochs,
        output_dir=args.output_dir,
        overwrite=args.overwrite,
        seed=args.seed,
        optimizer="adam",  # the chapter: Adam, lr 1e-3, no weight decay on a frozen backbone
        lr=args.lr,
        weight_decay=0.0,
        amp_dtype=torch.bfloat16 if args.bf16 else None,
    )
    if importlib.util.find_spec("matplotlib") is not None:
        from vitlib.plots import plot_history

        plot_history(history.as_dict(), args.output_dir / "history.png", overwrite=args.overwrite)
    print(f"final test accuracy: {history.test_acc[-1]:.4f} (best {max(history.test_acc):.4f})")
    return 0


def _heads(args: argparse.Namespace) -> dict[str, int]:
    return {} if args.num_heads is None else {"num_heads": args.num_heads}


if __name__ == "__main__":
    sys.exit(main())
