"""How far the fast paths of `vitlib.predict` move a trained model's answers: the JPEG decoded
at a reduced scale (Pillow's draft mode, what `open_image` does for a known preprocessing)
against the full decode, and ``precision="bf16"``/``"int8"`` against float32.

For each run given, the test images of its data are saved as camera-size JPEGs (each enlarged
to ``--side`` pixels on its longer side, quality 90), then classified four ways: full decode in
float32 (the reference), reduced decode in float32, and reduced decode in bf16 and int8. It
reports the share of images whose top-1 class equals the reference's and the largest
difference of any class probability.

    python benchmarks/decode_agreement.py runs/digits --data digits
    python benchmarks/decode_agreement.py runs/colours --data data/colours --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from PIL import Image

import vitlib
from vitlib.data import DigitsDataset, ImageFolderDataset
from vitlib.data.image_folder import open_image
from vitlib.data.preprocessing import Preprocessing


def camera_jpegs(data: str, folder: Path, side: int) -> list[Path]:
    """The test images of ``data`` (``"digits"`` or a folder with ``test/``) as JPEGs whose
    longer side is ``side`` pixels."""
    if data == "digits":
        digits = DigitsDataset("test", image_size=8)
        images = [
            Image.fromarray((digits.images[index][0].numpy() * 255).round().astype("uint8"), "L")
            for index in range(len(digits))
        ]
        resample = Image.Resampling.NEAREST  # the digits' own pixels, enlarged
    else:
        test = ImageFolderDataset(Path(data) / "test")
        images = [test.load_image(index) for index in range(len(test))]
        resample = Image.Resampling.BICUBIC
    paths = []
    for index, image in enumerate(images):
        scale = side / max(image.size)
        size = (round(image.width * scale), round(image.height * scale))
        path = folder / f"{index:05d}.jpg"
        image.convert("RGB").resize(size, resample).save(path, quality=90)
        paths.append(path)
    return paths


def probabilities(
    model: vitlib.ViT, spec: Preprocessing, paths: list[Path], reduced: bool
) -> torch.Tensor:
    """Class probabilities of every image, decoded whole or at the reduced scale."""
    transform = spec.transform()
    rows = []
    with torch.no_grad():
        for start in range(0, len(paths), 64):
            chunk = paths[start : start + 64]
            batch = torch.stack(
                [transform(open_image(path, spec if reduced else None)) for path in chunk]
            )
            rows.append(model(batch).float().softmax(dim=-1))
    return torch.cat(rows)


def compare(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    top1 = (reference.argmax(dim=-1) == other.argmax(dim=-1)).float().mean().item()
    return {
        "top1_agreement": round(top1, 4),
        "max_prob_diff": round(float((reference - other).abs().max()), 4),
    }


def measure(run: str, data: str, side: int) -> dict[str, Any]:
    model = vitlib.load_pretrained(run).eval()
    spec = vitlib.model_metadata(model).preprocessing
    if spec is None:
        raise SystemExit(f"{run} records no preprocessing; give a run made by vitlib train")
    models = {
        "reduced decode, fp32": model,
        "reduced decode, bf16": vitlib.optimize_for_inference(model, "bf16"),
        "reduced decode, int8": vitlib.optimize_for_inference(model, "int8"),
    }
    with tempfile.TemporaryDirectory() as temporary:
        paths = camera_jpegs(data, Path(temporary), side)
        reference = probabilities(model, spec, paths, reduced=False)
        sizes = {open_image(path, spec).size for path in paths[:5]}
        results = {
            name: compare(reference, probabilities(variant, spec, paths, reduced=True))
            for name, variant in models.items()
        }
    return {
        "run": run,
        "data": data,
        "images": len(paths),
        "jpeg_side": side,
        "decoded_sizes_sample": sorted(sizes),
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run or checkpoint with recorded preprocessing")
    parser.add_argument("--data", required=True, help='"digits" or a folder with test/')
    parser.add_argument("--side", type=int, default=2000, help="the JPEGs' longer side")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    report = measure(args.run, args.data, args.side)
    print(f"{report['run']} on {report['images']} {args.data} test images as {args.side}-px JPEGs")
    print(f"  decoded at {report['decoded_sizes_sample']} (a sample), full decode as reference")
    for name, values in report["results"].items():
        print(
            f"  {name:22} top-1 equal on {values['top1_agreement']:.2%}, "
            f"largest probability difference {values['max_prob_diff']:.4f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
