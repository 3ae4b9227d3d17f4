"""Time and memory of `vitlib.evaluate_model` and `EvaluationReport.save` against the head's size.

A tiny ViT (32 x 32 images, 2 layers, width 32) with a head of N classes, each named, is
evaluated on a folder of 2 images of 2 classes, then its report is saved. Each N runs in a fresh
process, so that one's high-water mark cannot hide another's. The report costs what the
classes present cost: before the fix, 10,000 classes took 10 s, 2.5 GB and a 287 MB JSON
report (hostile probe 2026-12-01, D3/E30). docs/predict.md states the result.

    python benchmarks/evaluate_many_classes.py                  # 10, 1000, 10000 and 21843
    python benchmarks/evaluate_many_classes.py --classes 100000
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch

MIB: Final = 2**20
TINY: Final = {
    "img_size": 32,
    "patch_size": 8,
    "num_transformer_layers": 2,
    "embedding_dim": 32,
    "mlp_size": 64,
    "num_heads": 2,
}


def _measure(classes: int) -> dict[str, Any]:
    """Build the model and the folder, evaluate, save; return the times and sizes."""
    from PIL import Image

    import vitlib
    from vitlib.checkpoints import attach_metadata

    torch.manual_seed(0)
    model = vitlib.ViT(**TINY, num_classes=classes).eval()
    attach_metadata(model, labels=[f"class_{index:06d}" for index in range(classes)])
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "images"
        for index in (0, classes - 1):
            (folder / f"class_{index:06d}").mkdir(parents=True)
            pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"class_{index:06d}" / "0.png")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        start = time.perf_counter()
        report = vitlib.evaluate_model(model, folder)
        evaluated = time.perf_counter() - start
        json_bytes = len(json.dumps(report.to_dict()))
        start = time.perf_counter()
        out = report.save(Path(scratch) / "report")
        saved = time.perf_counter() - start
        report_bytes = (out / "report.json").stat().st_size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "classes": classes,
        "evaluate_s": round(evaluated, 3),
        "save_s": round(saved, 3),
        "to_dict_json_bytes": json_bytes,
        "report_json_bytes": report_bytes,
        "peak_rss_mib": round(peak / MIB),
        "peak_above_model_mib": round((peak - before) / MIB),
    }


def _in_fresh_process(classes: int) -> dict[str, Any]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        result: dict[str, Any] = pool.apply(_measure, (classes,))
    return result


def main() -> None:
    """Measure each head size and print one table row per size."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--classes", type=int, nargs="+", default=[10, 1000, 10_000, 21_843], help="head sizes"
    )
    args = parser.parse_args()
    print(
        "| classes | evaluate_model | save | to_dict JSON | report.json | peak RSS "
        "| above the model |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for classes in args.classes:
        row = _in_fresh_process(classes)
        print(
            f"| {row['classes']:,} | {row['evaluate_s']:.2f} s | {row['save_s']:.2f} s "
            f"| {row['to_dict_json_bytes']:,} B | {row['report_json_bytes']:,} B "
            f"| {row['peak_rss_mib']} MiB | {row['peak_above_model_mib']} MiB |"
        )


if __name__ == "__main__":
    main()
