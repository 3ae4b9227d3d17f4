"""Memory of ``vitlib predict`` and ``vitlib evaluate`` as the number of images grows: the peak
resident memory of each command, as a whole process (its decoding workers counted apart), on
folders of 1,000 to 10,000 images.

The images are small generated JPEGs (64 x 48, four colour classes in class folders) and the
model a ViT-Ti/16 at 64 pixels with random weights, so that 10,000 images take seconds: what is
measured is what grows with the count (the list of predictions, the report's tallies, the
loader's queue), not the model. The memory is sampled from ``/proc`` every 20 ms (Linux).

    python benchmarks/inference_memory.py          # 1,000, 10,000, 20,000 images, 3 runs each
    python benchmarks/inference_memory.py --counts 100,1000 --repeats 1 --json out.json
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
from PIL import Image

import vitlib
from vitlib.data import Preprocessing

CLASSES: Final = ("red", "green", "blue", "yellow")
COLOURS: Final = ((210, 40, 40), (40, 170, 60), (40, 70, 210), (225, 205, 40))
SAMPLE_S: Final = 0.02


def write_images(folder: Path, count: int, seed: int = 0) -> Path:
    """``count`` noisy 64 x 48 JPEGs of the colour classes in class folders under ``folder``."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        label = index % len(CLASSES)
        target = folder / CLASSES[label] / f"{index:05d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.array(COLOURS[label], dtype=np.float64) + rng.normal(0, 30, (48, 64, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(target, quality=85)
    return folder


def write_model(folder: Path) -> Path:
    model = vitlib.ViT.from_preset("ViT-Ti/16", img_size=64, num_classes=len(CLASSES))
    spec = Preprocessing(image_size=(64, 64), resize="squash")
    vitlib.attach_metadata(model, labels=CLASSES, preprocessing=spec)
    return vitlib.save_pretrained(model, folder, overwrite=True)


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="utf-8")
    except OSError:
        return []
    return [int(child) for child in text.split()]


def peak_memory(command: Sequence[str]) -> dict[str, Any]:
    """Run ``command``; its peak resident memory (MiB), that of its largest child process, and
    the wall time."""
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    main_peak = child_peak = 0
    while process.poll() is None:
        main_peak = max(main_peak, _rss_kib(process.pid))
        for child in _children(process.pid):
            child_peak = max(child_peak, _rss_kib(child))
        time.sleep(SAMPLE_S)
    _, errors = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{errors.decode()[-2000:]}")
    return {
        "peak_mib": round(main_peak / 1024, 1),
        "worker_peak_mib": round(child_peak / 1024, 1),
        "seconds": round(time.perf_counter() - began, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="1000,10000,20000", help="comma-separated counts")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command and count")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    counts = [int(count) for count in args.counts.split(",")]
    vitlib_command = [sys.executable, "-m", "vitlib"]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        model = write_model(work / "model")
        for count in counts:
            images = write_images(work / f"images-{count}", count)
            for name, extra in (
                ("predict", ["predict", str(model), str(images), "--json"]),
                (
                    "evaluate",
                    ["evaluate", str(model), "--data", str(images), "--output-dir",
                     str(work / f"report-{count}"), "--overwrite"],
                ),
            ):  # fmt: skip
                runs = [peak_memory([*vitlib_command, *extra]) for _ in range(args.repeats)]
                peaks = sorted(run["peak_mib"] for run in runs)
                row = {
                    "command": name,
                    "images": count,
                    "peak_mib": statistics.median(peaks),
                    "peak_mib_each_run": [run["peak_mib"] for run in runs],
                    "worker_peak_mib": max(run["worker_peak_mib"] for run in runs),
                    "seconds": statistics.median(run["seconds"] for run in runs),
                }
                rows.append(row)
                print(
                    f"vitlib {name} on {count} images: peak {row['peak_mib']} MiB (runs: "
                    f"{', '.join(map(str, row['peak_mib_each_run']))}) "
                    f"(largest worker {row['worker_peak_mib']} MiB), {row['seconds']} s",
                    flush=True,
                )
    print("| command | images | peak MiB (median) | each run | largest worker MiB | seconds |")
    print("|---|---:|---:|---|---:|---:|")
    for row in rows:
        each = ", ".join(map(str, row["peak_mib_each_run"]))
        print(
            f"| vitlib {row['command']} | {row['images']:,} | {row['peak_mib']} | {each} | "
            f"{row['worker_peak_mib']} | {row['seconds']} |"
        )
    if args.json is not None:
        machine = {"cpus": os.cpu_count(), "vitlib": vitlib.__version__}
        args.json.write_text(
            json.dumps({"machine": machine, "rows": rows}, indent=2, allow_nan=False) + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
