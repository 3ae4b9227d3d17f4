"""From photo to answer: ``vitlib.predict`` against Hugging Face's
``pipeline("image-classification")`` on camera-size JPEGs, as whole processes, interleaved.

Both read the same model folder, written once by ``vitlib.save_pretrained(...,
format="huggingface")``: a ViT-S/16 or ViT-B/16 with random weights whose head is a linear probe
(`vitlib.inference.probe.ridge_fit`) fitted to a few small images of four colour classes, so
that its top-1 answers follow the photos and their agreement means something. Its
preprocessing is the pipeline's (``ViTImageProcessor``: squash to 224, mean and std 0.5).

Each measured run is its own Python process (``--child``), and the runs go in turn, round
after round, so that the machine's drift touches every one alike. A process reports:

- ``images/s``: the photos classified per second by the one call a user makes
  (``vitlib.predict(model, folder, precision=...)`` or ``pipe(paths, batch_size=...)``), after
  the imports and the model load, which ``process s`` adds (the whole process's wall time);
- ``decode ms``: decoding and preparing one photo, on one thread, as that library does it;
- ``model images/s``: the model alone on prepared batches of the same size (vitlib at the
  same precision), the speed the end-to-end figure is held to;
- the top-1 class of each photo, compared between the runs.

The pipeline runs twice: as its documentation shows it (``batch_size`` given, no loader
workers) and with as many loader workers as vitlib's default; ``vs HF`` divides by the faster.

    python benchmarks/photos.py                        # ViT-S/16 and ViT-B/16, 3 rounds
    python benchmarks/photos.py --photos DIR           # your own photos instead of generated ones
    python benchmarks/photos.py --presets ViT-S/16 --rounds 1 --photo-count 32   # quicker
    python benchmarks/photos.py --quick --json out.json    # a smoke test (exit 0 whatever)
    python benchmarks/photos.py --avx2 ...     # as on a CPU without AVX-512, VNNI or AMX

``--photos DIR`` takes any folder of images (subfolders included); the probe's training images
are still the generated ones. docs/benchmarks.md gives the figures and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch

import vitlib
from vitlib.data import Preprocessing
from vitlib.data.image_folder import image_files, open_image
from vitlib.data.loaders import decode_workers
from vitlib.inference import Precision

#: The benchmark's runs: (name, library, the child's options). vitlib's decoding workers are
#: its default (`vitlib.data.loaders.decode_workers`); the pipeline runs with its default (no
#: loader workers) and with as many workers as vitlib chooses here.
RUNNERS: Final = (
    ("vitlib fp32", "vitlib", ("--precision", "fp32")),
    ("vitlib int8", "vitlib", ("--precision", "int8")),
    ("HF pipeline", "hf", ()),
    ("HF pipeline, workers", "hf", ("--hf-workers", "auto")),
)
#: The ``--precision`` values of a vitlib child, as `vitlib.predict` takes them.
PRECISIONS: Final[dict[str, Precision]] = {"fp32": "fp32", "bf16": "bf16", "int8": "int8"}
#: Images the model-only figure is measured on (whole batches of prepared photos).
MODEL_ONLY_IMAGES: Final = 96
#: The model's input: the pipeline's own ViTImageProcessor (squash to 224, mean and std 0.5).
PREPROCESSING: Final = Preprocessing(
    image_size=(224, 224), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize="squash"
)
CLASSES: Final = ("red", "green", "blue", "yellow")
DECODE_SAMPLE: Final = 16  # photos decoded one by one for the decode-time figure
TARGETS: Final = {"fp32 vs model-only": 0.90, "fp32 vs HF": 1.5, "int8 vs HF": 4.0}


# ---------------------------------------------------------------------------------------------
# Photos and the model


def camera_photos(folder: Path, count: int, size: tuple[int, int], seed: int) -> Path:
    """``count`` camera-size JPEGs (quality 90) of the colour classes, in class folders."""
    from folder_recipe import KINDS, _noisy

    draw = KINDS["colours"].draw
    for index in range(count):
        name = CLASSES[index % len(CLASSES)]
        (folder / name).mkdir(parents=True, exist_ok=True)
        path = folder / name / f"photo_{index:04d}.jpg"
        if not path.exists():
            rng = np.random.default_rng([seed, 1, index])
            _noisy(rng, draw(rng, size, name)).save(path, quality=90)
    return folder


def probe_images(count_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Small images of each colour class, prepared for the model, and their labels."""
    from folder_recipe import KINDS, _noisy

    draw, transform = KINDS["colours"].draw, PREPROCESSING.transform()
    images, labels = [], []
    for label, name in enumerate(CLASSES):
        for index in range(count_per_class):
            rng = np.random.default_rng([seed, 2, label, index])
            images.append(transform(_noisy(rng, draw(rng, (320, 240), name))))
            labels.append(label)
    return torch.stack(images), torch.tensor(labels)


def write_model(preset: str, folder: Path, seed: int) -> Path:
    """A random ``preset`` with a probe head, saved in Hugging Face's layout into ``folder``."""
    from vitlib.inference.probe import ridge_fit

    torch.manual_seed(seed)
    model = vitlib.ViT.from_preset(preset, num_classes=len(CLASSES)).eval()
    images, labels = probe_images(16, seed)
    with torch.inference_mode():
        features = model.forward_head(model.forward_features(images), pre_logits=True)
    weight, bias = ridge_fit(features, labels, len(CLASSES), l2=1.0)
    head = model.head
    if not isinstance(head, torch.nn.Linear):
        raise SystemExit(f"{preset} has no linear head to fit: {head}")
    with torch.no_grad():
        head.weight.copy_(weight.T.float())
        head.bias.copy_(bias.float())
    vitlib.attach_metadata(model, labels=CLASSES, preprocessing=PREPROCESSING)
    return vitlib.save_pretrained(model, folder, format="huggingface", overwrite=True)


# ---------------------------------------------------------------------------------------------
# One measured process


def _per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def child_vitlib(
    model_dir: Path, photos: list[Path], batch_size: int, precision: Precision
) -> dict[str, Any]:
    """vitlib's end-to-end call, its decode time and its model alone."""
    from vitlib.inference.optimize import at_precision

    model = vitlib.load_pretrained(model_dir)
    began = time.perf_counter()
    predictions = vitlib.predict(model, photos, batch_size=batch_size, precision=precision)
    seconds = time.perf_counter() - began
    transform = predictions.preprocessing.transform()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a decoding worker
    decode_began = time.perf_counter()
    prepared = [
        transform(open_image(path, transform.preprocessing)) for path in photos[:DECODE_SAMPLE]
    ]
    decode_s = (time.perf_counter() - decode_began) / len(prepared)
    torch.set_num_threads(threads)
    fast = at_precision(model, precision, torch.device("cpu"))
    batch = torch.stack([prepared[i % len(prepared)] for i in range(batch_size)])
    model_s = _model_time(fast, batch, MODEL_ONLY_IMAGES)
    return {
        "images_per_s": _per_second(len(photos), seconds),
        "decode_ms": 1000 * decode_s,
        "model_images_per_s": _per_second(MODEL_ONLY_IMAGES, model_s),
        "workers": decode_workers(None, len(photos), batch_size),
        "top1": {p.source: p.label for p in predictions},
    }


def child_hf(model_dir: Path, photos: list[Path], batch_size: int, workers: int) -> dict[str, Any]:
    """The pipeline's end-to-end call, its image processor's time and its model alone."""
    from PIL import Image
    from transformers import pipeline

    pipe = pipeline("image-classification", model=str(model_dir), device=-1)
    paths = [str(path) for path in photos]
    began = time.perf_counter()
    outputs = pipe(paths, batch_size=batch_size, top_k=1, num_workers=workers)
    seconds = time.perf_counter() - began
    processor = pipe.image_processor
    if processor is None:
        raise SystemExit(f"the pipeline of {model_dir} has no image processor")
    decode_began = time.perf_counter()
    prepared = []
    for path in paths[:DECODE_SAMPLE]:
        with Image.open(path) as image:
            prepared.append(processor(image.convert("RGB"), return_tensors="pt")["pixel_values"][0])
    decode_s = (time.perf_counter() - decode_began) / len(prepared)
    batch = torch.stack([prepared[i % len(prepared)] for i in range(batch_size)])
    model_s = _model_time(lambda x: pipe.model(pixel_values=x).logits, batch, MODEL_ONLY_IMAGES)
    return {
        "images_per_s": _per_second(len(photos), seconds),
        "decode_ms": 1000 * decode_s,
        "model_images_per_s": _per_second(MODEL_ONLY_IMAGES, model_s),
        "workers": workers,
        "top1": {path: output[0]["label"] for path, output in zip(paths, outputs, strict=True)},
    }


def _model_time(model: Any, batch: torch.Tensor, images: int) -> float:
    """Seconds for ``model`` to classify ``images`` images in batches like ``batch`` (one
    warm-up batch first)."""
    with torch.inference_mode():
        model(batch)
        began = time.perf_counter()
        done = 0
        while done < images:
            take = min(len(batch), images - done)
            model(batch[:take])
            done += take
    return time.perf_counter() - began


# ---------------------------------------------------------------------------------------------
# The interleaved rounds


def run_child(
    library: str, model_dir: Path, photos: Path, batch_size: int, options: Sequence[str]
) -> dict[str, Any]:
    """One measured process; its report, with the process's wall time."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "out.json"
        command = [
            sys.executable, str(Path(__file__).resolve()), "--child", library,
            "--model-dir", str(model_dir), "--photos", str(photos),
            "--batch-size", str(batch_size), "--json", str(out),
            *options,
        ]  # fmt: skip
        began = time.perf_counter()
        subprocess.run(command, check=True)
        report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    report["process_s"] = time.perf_counter() - began
    return report


def agreement(first: Mapping[str, str], second: Mapping[str, str]) -> float:
    if first.keys() != second.keys():
        raise SystemExit("the runs classified different photos")
    return sum(first[key] == second[key] for key in first) / len(first)


def summarise(
    preset: str, reports: Mapping[str, list[dict[str, Any]]], photos: int
) -> list[dict[str, Any]]:
    """Medians over the rounds, ratios and agreements, one row per runner."""
    hf = max(  # the faster way of running the pipeline
        statistics.median(r["images_per_s"] for r in runs)
        for name, runs in reports.items()
        if name.startswith("HF")
    )
    reference = reports["HF pipeline"][0]["top1"]
    truth = {path: Path(path).parent.name for path in reference}
    labelled = set(truth.values()) <= set(CLASSES)  # the generated photos, in class folders
    rows = []
    for name, runs in reports.items():
        speed = statistics.median(r["images_per_s"] for r in runs)
        model = statistics.median(r["model_images_per_s"] for r in runs)
        rows.append({
            "preset": preset,
            "runner": name,
            "photos": photos,
            "images_per_s": round(speed, 2),
            "images_per_s_each_round": [round(r["images_per_s"], 2) for r in runs],
            "process_s": round(statistics.median(r["process_s"] for r in runs), 1),
            "decode_ms": round(statistics.median(r["decode_ms"] for r in runs), 1),
            "model_images_per_s": round(model, 2),
            "of_model_only": round(speed / model, 3),
            "vs_hf": round(speed / hf, 2),
            "top1_agreement_with_hf": round(agreement(runs[0]["top1"], reference), 4),
            "top1_accuracy": round(agreement(runs[0]["top1"], truth), 4) if labelled else None,
        })  # fmt: skip
    return rows


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        "| model | run | photos/s | of model-only | vs HF | decode ms/photo "
        "| model-only images/s | process s | top-1 = HF's | top-1 correct |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        correct = "-" if row["top1_accuracy"] is None else f"{row['top1_accuracy']:.1%}"
        lines.append(
            f"| {row['preset']} | {row['runner']} | {row['images_per_s']:.2f} | "
            f"{row['of_model_only']:.0%} | {row['vs_hf']:.2f}x | {row['decode_ms']:.1f} | "
            f"{row['model_images_per_s']:.2f} | {row['process_s']:.1f} | "
            f"{row['top1_agreement_with_hf']:.1%} | {correct} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="ViT-S/16,ViT-B/16", help="comma-separated presets")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every run")
    parser.add_argument("--photo-count", type=int, default=96, help="generated photos")
    parser.add_argument("--photo-size", default="2000x1500", help="generated photos' WIDTHxHEIGHT")
    parser.add_argument("--photos", type=Path, help="a folder of your own photos instead")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, help="keep the photos and models here")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke test: ViT-Ti/16, 6 small photos, 1 round"
    )
    parser.add_argument("--avx2", action="store_true", help="hold the kernels to AVX2")
    parser.add_argument("--child", choices=("vitlib", "hf"), help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=list(PRECISIONS), help=argparse.SUPPRESS)
    parser.add_argument("--hf-workers", default="0", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def child(args: argparse.Namespace) -> int:
    photos = image_files(args.photos)
    if args.child == "vitlib":
        precision = PRECISIONS[args.precision]
        report = child_vitlib(args.model_dir, photos, args.batch_size, precision)
    else:
        workers = (
            decode_workers(None, len(photos), args.batch_size)
            if args.hf_workers == "auto"
            else int(args.hf_workers)
        )
        report = child_hf(args.model_dir, photos, args.batch_size, workers)
    args.json.write_text(json.dumps(report, allow_nan=False), encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Write the photos and models, run every runner in turn for ``--rounds``, print the table;
    0 iff every target was met (always with ``--quick``)."""
    args = parse_args(argv)
    if args.child:
        return child(args)
    if args.quick:
        args.presets, args.rounds, args.photo_count = "ViT-Ti/16", 1, 6
        args.photo_size, args.batch_size = "480x360", 4
    from folder_recipe import hold_to_avx2, machine, machine_line

    if args.avx2:
        hold_to_avx2(Path(__file__))
    info = machine()
    print(f"machine: {machine_line(info)}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work_dir or Path(scratch)
        width, height = (int(side) for side in args.photo_size.split("x"))
        photos = args.photos or camera_photos(
            work / "photos", args.photo_count, (width, height), args.seed
        )
        count = len(image_files(photos))
        rows: list[dict[str, Any]] = []
        for preset in args.presets.split(","):
            model_dir = write_model(preset, work / preset.replace("/", "-"), args.seed)
            reports: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in RUNNERS}
            for round_ in range(args.rounds):
                for name, library, options in RUNNERS:
                    report = run_child(library, model_dir, photos, args.batch_size, options)
                    reports[name].append(report)
                    print(
                        f"{preset} round {round_ + 1} {name}: {report['images_per_s']:.2f} "
                        f"photos/s (model alone {report['model_images_per_s']:.2f}, decode "
                        f"{report['decode_ms']:.1f} ms/photo, process {report['process_s']:.1f} s)",
                        flush=True,
                    )
            rows += summarise(preset, reports, count)
    print(markdown(rows))
    met = check_targets(rows)
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": info, "rows": rows, "targets_met": met}, indent=2, allow_nan=False
            ),
            encoding="utf-8",
        )
    return 0 if args.quick or all(met.values()) else 1


def check_targets(rows: Sequence[Mapping[str, Any]]) -> dict[str, bool]:
    """Each target of the issue, per preset: met or not (printed)."""
    met: dict[str, bool] = {}
    for row in rows:
        if row["runner"] == "vitlib fp32":
            met[f"{row['preset']} fp32 >= 90% of model-only"] = (
                row["of_model_only"] >= TARGETS["fp32 vs model-only"]
            )
            met[f"{row['preset']} fp32 >= 1.5x HF"] = row["vs_hf"] >= TARGETS["fp32 vs HF"]
        elif row["runner"] == "vitlib int8":
            met[f"{row['preset']} int8 >= 4x HF"] = row["vs_hf"] >= TARGETS["int8 vs HF"]
    for target, ok in met.items():
        print(f"{'met' if ok else 'NOT met'}: {target}")
    return met


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
