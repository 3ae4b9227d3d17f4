"""Measure the fast paths against plain float32: int8/bf16 inference and gradient checkpointing.

    python benchmarks/fast_paths.py                     # ViT-B/16 inference, ViT-S/16 training
    python benchmarks/fast_paths.py --quick             # tiny sizes, a smoke test (CI runs it)
    python benchmarks/fast_paths.py --json out.json

Inference: img/s under ``torch.inference_mode`` for float32 eager and for
``optimize_for_inference(model, "int8" | "bf16")``, measured interleaved (the order rotates each
round) so the machine's drift hits every variant alike; medians and minima of the rounds, and the
ratio to float32. Training: one subprocess per setting (so each starts from a clean heap) runs
forward, cross-entropy, backward and an AdamW step with and without gradient checkpointing and
reports its peak resident memory (``ru_maxrss``) and img/s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import vitlib
from vitlib.inference import cpu_has_bf16_units, optimize_for_inference

_TRAIN_CHILD = """
import json, resource, sys, time, torch, vitlib
preset, batch, size, steps, checkpointing, threads = sys.argv[1:7]
torch.set_num_threads(int(threads))
torch.manual_seed(0)
model = vitlib.create_model(preset, img_size=int(size), mlp_dropout=0.0, embedding_dropout=0.0)
model.set_grad_checkpointing(checkpointing == "1")
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
images = torch.randn(int(batch), 3, int(size), int(size))
labels = torch.randint(0, 1000, (int(batch),))
def step():
    optimizer.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    optimizer.step()
step()  # allocates the optimiser state
start = time.perf_counter()
for _ in range(int(steps)):
    step()
seconds = (time.perf_counter() - start) / int(steps)
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"img_per_s": int(batch) / seconds, "peak_rss_mib": peak_kib / 1024}))
"""


def measure_inference(
    preset: str, batch: int, size: int, rounds: int, repeats: int
) -> dict[str, dict[str, float]]:
    """img/s of each precision, interleaved; median and min over rounds of the best repeat."""
    torch.manual_seed(0)
    model = vitlib.create_model(preset, img_size=size, mlp_dropout=0.0, embedding_dropout=0.0)
    model.eval()
    variants: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"fp32": model}
    variants["int8"] = optimize_for_inference(model, "int8")
    if cpu_has_bf16_units():
        variants["bf16"] = optimize_for_inference(model, "bf16")
    images = torch.randn(batch, 3, size, size)
    rates: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    with torch.inference_mode():
        for name in names:
            variants[name](images)  # warm up each once
        for round_index in range(rounds):
            order = names[round_index % len(names) :] + names[: round_index % len(names)]
            for name in order:
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    variants[name](images)
                    times.append(time.perf_counter() - start)
                rates[name].append(batch / min(times))
    return {
        name: {"median_img_per_s": statistics.median(values), "min_img_per_s": min(values)}
        for name, values in rates.items()
    }


def measure_training(
    preset: str, batch: int, size: int, steps: int, threads: int
) -> dict[str, dict[str, float]]:
    """Peak RSS and img/s of a training step with and without gradient checkpointing."""
    results = {}
    for checkpointing in (False, True):
        child_args = [preset, str(batch), str(size), str(steps), str(int(checkpointing))]
        done = subprocess.run(
            [sys.executable, "-c", _TRAIN_CHILD, *child_args, str(threads)],
            capture_output=True,
            text=True,
            check=True,
        )
        results["checkpointed" if checkpointing else "plain"] = json.loads(
            done.stdout.strip().splitlines()[-1]
        )
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print a markdown table (and JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        inference = measure_inference("ViT-Ti/16", 2, 32, rounds=1, repeats=1)
        training = measure_training("ViT-Ti/16", 2, 32, steps=1, threads=args.threads)
    else:
        inference = measure_inference("ViT-B/16", 8, 224, args.rounds, args.repeats)
        training = measure_training("ViT-S/16", 16, 224, steps=3, threads=args.threads)
    results: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": args.threads,
        "cpu_bf16_units": cpu_has_bf16_units(),
        "load_average": list(_load_average()),
        "inference": inference,
        "training": training,
    }
    base = inference["fp32"]["median_img_per_s"]
    print("| inference | median img/s | min img/s | vs fp32 |\n|---|---|---|---|")
    for name, row in inference.items():
        median, low = row["median_img_per_s"], row["min_img_per_s"]
        print(f"| {name} | {median:.2f} | {low:.2f} | {median / base:.2f}x |")
    plain, checkpointed = training["plain"], training["checkpointed"]
    print("\n| training | img/s | peak RSS (MiB) |\n|---|---|---|")
    for name, row in training.items():
        print(f"| {name} | {row['img_per_s']:.2f} | {row['peak_rss_mib']:.0f} |")
    print(
        f"\ncheckpointing: {plain['peak_rss_mib'] / checkpointed['peak_rss_mib']:.2f}x less peak "
        f"memory, {1 - checkpointed['img_per_s'] / plain['img_per_s']:.0%} slower"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def _load_average() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


if __name__ == "__main__":
    sys.exit(main())
