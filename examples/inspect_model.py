"""Look inside a ViT: the paper's Figure 6 and 7 analyses as PNGs, for any model and image.

The model is a random one (``--preset``, ``--image-size``), or any checkpoint
``vitlib.load_pretrained`` reads (``--checkpoint``: a saved run, a Hugging Face directory, a
weights file, ``torchvision:vit_b_16``...). The input is a handwritten digit from the embedded
test set by default, or ``--image`` (needs Pillow, ``vitlib[data]``). Writes to ``--output-dir``
(default ``runs/inspect/<the checkpoint as a name>``):

- ``filters.png``: the principal components of the patch filters (Fig. 7 left);
- ``position_similarity.png``: cosine similarity of the position embeddings (Fig. 7 centre);
- ``attention_distance.png``: mean attention distance per head and layer (Fig. 7 right),
  averaged over ``--num-images`` digits (or the one ``--image``);
- ``attention_rollout.png``: the output's attention over the input by rollout (Fig. 6).

Examples::

    python examples/inspect_model.py                                  # a random ViT-Ti/4
    python examples/train_from_scratch.py --image-size 32 && \\
        python examples/inspect_model.py --checkpoint runs/digits/best   # runs/inspect/digits-best
    python examples/inspect_model.py --checkpoint torchvision:vit_b_16 --image cat.jpg

Needs matplotlib (``vitlib[plots]``) and, for the digits, scikit-learn (``vitlib[data]``).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F

import vitlib
from vitlib.analysis import (
    embedding_filters,
    mean_attention_distance,
    position_embedding_similarity,
    rollout_map,
)
from vitlib.analysis.figures import (
    plot_attention_distance,
    plot_attention_rollout,
    plot_embedding_filters,
    plot_position_similarity,
)
from vitlib.data import DIGITS_MEAN, DIGITS_STD, IMAGENET_MEAN, IMAGENET_STD, DigitsDataset
from vitlib.data.digits import DIGITS_TEST_SIZE
from vitlib.errors import VitlibError

PAPER_FILTERS = 28
#: Where the pictures go without --output-dir: a folder per model below it.
INSPECT_FOLDER = Path("runs/inspect")
#: The pictures the example writes into --output-dir (filters.png for grey or RGB models only).
FILTERS, POSITIONS, DISTANCES, ROLLOUT = (
    "filters.png",
    "position_similarity.png",
    "attention_distance.png",
    "attention_rollout.png",
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Write the paper's Fig. 6 and 7 analyses of a ViT as PNGs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--checkpoint", help="anything load_pretrained reads; default: random")
    parser.add_argument("--preset", default="ViT-Ti/4", help="the random model's preset")
    parser.add_argument("--image-size", type=int, default=32, help="the random model's")
    parser.add_argument("--seed", type=int, default=0, help="the random model's weights")
    parser.add_argument("--image", type=Path, help="an image file; default: a digit")
    parser.add_argument("--digit", type=int, default=0, help="which test digit to show")
    parser.add_argument(
        "--num-images", type=int, default=32, help="test digits the distance is averaged over"
    )
    parser.add_argument("--discard-ratio", type=float, default=0.0, help="of attention_rollout")
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="default: runs/inspect/<the checkpoint, as a name>, e.g. runs/inspect/digits-best "
        "for --checkpoint runs/digits/best, runs/inspect/random without one",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing PNGs")
    args = parser.parse_args(argv)
    if args.output_dir is None:
        args.output_dir = default_output_dir(args.checkpoint)
    if not 0 <= args.digit < DIGITS_TEST_SIZE:
        parser.error(f"--digit must be from 0 to {DIGITS_TEST_SIZE - 1}, got {args.digit}")
    if not 1 <= args.num_images <= DIGITS_TEST_SIZE:
        parser.error(f"--num-images must be from 1 to {DIGITS_TEST_SIZE}, got {args.num_images}")
    if not 0.0 <= args.discard_ratio < 1.0:
        parser.error(f"--discard-ratio must be in [0, 1), got {args.discard_ratio}")
    return args


def default_output_dir(checkpoint: str | None) -> Path:
    """``runs/inspect/<name>``: each model's pictures in a folder of their own, named after
    the checkpoint (``runs/digits/best`` -> ``digits-best``, ``torchvision:vit_b_16`` ->
    ``torchvision-vit_b_16``), ``random`` for the random model."""
    if checkpoint is None:
        return INSPECT_FOLDER / "random"
    parts = [part for part in re.split(r"[/:\\]+", checkpoint) if part not in ("", ".", "..")]
    if parts and parts[0] == "runs":
        parts = parts[1:]
    return INSPECT_FOLDER / ("-".join(parts) or "checkpoint")


def load_model(args: argparse.Namespace) -> vitlib.ViT:
    """The checkpoint, or a random model of ``--preset`` for ``--image-size`` digits."""
    if args.checkpoint is not None:
        return vitlib.load_pretrained(args.checkpoint).eval()
    torch.manual_seed(args.seed)
    return vitlib.create_model(
        args.preset, img_size=args.image_size, in_channels=1, num_classes=10
    ).eval()


def load_images(
    args: argparse.Namespace, model: vitlib.ViT
) -> tuple[Tensor, list[float], list[float]]:
    """``(images, mean, std)``: the input first, then the other digits (if any) for averaging,
    sized and coloured for the model, with the normalisation to undo for drawing."""
    channels = model.config.in_channels
    height, width = model.config.image_hw
    if args.image is not None:
        from PIL import Image

        from vitlib.data import Preprocessing

        with Image.open(args.image) as opened:
            spec = Preprocessing((height, width), crop_ratio=1.0)
            image = spec.transform()(opened.convert("RGB"))
        mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
        images = image.unsqueeze(0)
        if channels == 1:  # a grey model: the luminance, normalised as the channel mean
            images = images.mean(dim=1, keepdim=True)
            mean, std = [sum(mean) / 3], [sum(std) / 3]
    else:
        digits = DigitsDataset("test", image_size=max(height, width, 8))
        others = [index for index in range(len(digits)) if index != args.digit]
        order = [args.digit, *others[: args.num_images - 1]]
        images = torch.stack([digits[i][0] for i in order])
        mean, std = [DIGITS_MEAN], [DIGITS_STD]
    if images.shape[-2:] != (height, width):
        images = F.interpolate(images, size=(height, width), mode="bilinear", antialias=True)
    if images.shape[1] != channels:
        images = images.expand(-1, channels, -1, -1)
        mean, std = mean * channels, std * channels
    return images.to(model.position_embedding.dtype), mean, std


def picture_paths(model: vitlib.ViT, output_dir: Path) -> list[Path]:
    """The PNGs that `write_pictures` writes for ``model``."""
    names = [POSITIONS, DISTANCES, ROLLOUT]
    if model.config.in_channels in (1, 3):  # patch filters are drawable as grey or RGB
        names.insert(0, FILTERS)
    return [output_dir / name for name in names]


def check_free(paths: Sequence[Path], overwrite: bool) -> None:
    """Refuse, before any analysis runs, to replace pictures without ``--overwrite``.

    Raises:
        FileExistsError: Some of ``paths`` exist; the message names them and the flag.
    """
    taken = [str(path) for path in paths if path.exists()]
    if taken and not overwrite:
        raise FileExistsError(
            f"{', '.join(taken)} already exist{'s' if len(taken) == 1 else ''}; pass "
            "--overwrite to replace the pictures, or choose another --output-dir"
        )


def write_pictures(
    model: vitlib.ViT,
    images: Tensor,
    mean: list[float],
    std: list[float],
    args: argparse.Namespace,
) -> list[Path]:
    """Run the analyses and write their PNGs; return the paths written."""
    out, overwrite = args.output_dir, args.overwrite
    config = model.config
    patch_h, patch_w = config.patch_hw
    written = []
    if out / FILTERS in picture_paths(model, out):
        available = min(config.embedding_dim - 1, config.in_channels * patch_h * patch_w)
        filters = embedding_filters(model, k=min(PAPER_FILTERS, available))
        written.append(plot_embedding_filters(filters, out / FILTERS, overwrite=overwrite))
    similarity = position_embedding_similarity(model)
    written.append(plot_position_similarity(similarity, out / POSITIONS, overwrite=overwrite))
    distances = mean_attention_distance(model, images)
    written.append(plot_attention_distance(distances, out / DISTANCES, overwrite=overwrite))
    attention = rollout_map(model, images[:1], discard_ratio=args.discard_ratio)[0]
    written.append(
        plot_attention_rollout(
            images[0],
            attention,
            out / ROLLOUT,
            mean=mean,
            std=std,
            overwrite=overwrite,
        )
    )
    if config.num_classes:
        with torch.no_grad():
            probabilities = model(images[:1]).softmax(dim=-1)[0]
        print(
            f"the model's class for the image: {int(probabilities.argmax())} "
            f"(probability {float(probabilities.max()):.2f})"
        )
    print(
        "mean attention distance per layer (pixels, heads averaged): "
        + " ".join(f"{float(d):.1f}" for d in distances.mean(dim=1))
    )
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Run the example; return the exit status (2 and one line for an expected failure: a bad
    option or checkpoint, an unreadable image, a picture in the way...)."""
    args = parse_args(argv)
    try:
        model = load_model(args)
        check_free(picture_paths(model, args.output_dir), args.overwrite)
        images, mean, std = load_images(args, model)
        paths = write_pictures(model, images, mean, std, args)
    except (VitlibError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
