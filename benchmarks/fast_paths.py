"""Measure the fast paths against plain float32: int8/bf16 inference, gradient checkpointing
and bf16 autocast training.

    python benchmarks/fast_paths.py                     # ViT-B/16 inference, ViT-S/16 training
    python benchmarks/fast_paths.py --quick             # tiny sizes, a smoke test (CI runs it)
    python benchmarks/fast_paths.py --json out.json

Inference: img/s under ``torch.inference_mode`` for float32 eager and for
``optimize_for_inference(model, "int8" | "bf16")``, measured interleaved (the order rotates each
round) so the machine's drift hits every variant alike; medians and minima of the rounds, and the
ratio to float32. Training (forward, cross-entropy, backward, AdamW step) in three settings,
plain float32, gradient checkpointing, and bf16 autocast (forward and loss under
``torch.autocast("cpu", torch.bfloat16)``, weights and AdamW in float32, as
``fit(amp_dtype=torch.bfloat16)`` runs it), each in subprocesses of its own:

* speed: img/s over ``--train-steps`` steps after two warm-up steps, glibc's malloc thresholds
  fixed as in ``peers.py`` (mmap 32 MiB, trim 1 GiB) so freed memory is reused;
* memory: a second subprocess in which glibc serves every block over 64 KiB with ``mmap`` and
  hands it back on ``free`` (``mallopt`` mmap threshold 64 KiB, trim threshold 0), so the resident
  set follows the live tensors instead of the allocator's cache. It reports the steady state (the
  growth of the resident set over two warm-up steps: AdamW's state and what the kernels keep)
  and the step's peak on top of it (``VmHWM`` after ``/proc/self/clear_refs`` minus ``VmRSS``
  before one more step: gradients, activations and temporaries); their sum is the training
  memory on top of the built model and the batch. That mode is slow (every large allocation
  faults its pages in afresh), hence the separate process for the speed.
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
from vitlib.inference.optimize import cpu_has_bf16_units, optimize_for_inference

_TRAIN_CHILD = """
import ctypes, json, re, sys, time, torch, vitlib
preset, batch, size, steps, setting, threads, mode = sys.argv[1:8]
libc = ctypes.CDLL("libc.so.6")
if mode == "memory":  # every block > 64 KiB mmap-ed and unmapped on free: RSS = live memory
    libc.mallopt(-3, 64 * 1024); libc.mallopt(-1, 0)
else:  # as peers.py: freed memory stays in the heap and is reused
    libc.mallopt(-3, 32 * 2**20); libc.mallopt(-1, 2**30)
torch.set_num_threads(int(threads))
torch.manual_seed(0)
model = vitlib.create_model(preset, img_size=int(size), mlp_dropout=0.0, embedding_dropout=0.0)
model.set_grad_checkpointing(setting == "checkpointed")
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
images = torch.randn(int(batch), 3, int(size), int(size))
labels = torch.randint(0, 1000, (int(batch),))
def kib(field):
    with open("/proc/self/status") as status:
        return int(re.search(field + r":\\s+(\\d+)", status.read()).group(1))
def step():
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=setting == "bf16 autocast"):
        logits = model(images)
        loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return str(logits.dtype)  # what the forward computed in: the setting at work
built = kib("VmRSS")
step(); step()  # AdamW's state, the kernels' first-call caches
steady = kib("VmRSS")
if mode == "memory":
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    dtype = step()
    peak = kib("VmHWM") - steady
    memory = {"steady_mib": (steady - built) / 1024, "step_peak_mib": peak / 1024}
    print(json.dumps({**memory, "logits_dtype": dtype}))
else:
    start = time.perf_counter()
    for _ in range(int(steps)):
        step()
    print(json.dumps({"img_per_s": int(batch) * int(steps) / (time.perf_counter() - start)}))
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


TRAINING_SETTINGS = ("plain", "checkpointed", "bf16 autocast")


def _train_child(
    preset: str, batch: int, size: int, steps: int, setting: str, threads: int, mode: str
) -> dict[str, Any]:
    child_args = [preset, str(batch), str(size), str(steps), setting]
    done = subprocess.run(
        [sys.executable, "-c", _TRAIN_CHILD, *child_args, str(threads), mode],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure_training(
    preset: str, batch: int, size: int, steps: int, threads: int, rounds: int = 1
) -> dict[str, dict[str, Any]]:
    """Training memory (exact, see the module docstring) and img/s of each of
    `TRAINING_SETTINGS`; the speed is the median of ``rounds`` subprocesses per setting, the
    settings taking turns."""
    results: dict[str, dict[str, Any]] = {}
    speeds: dict[str, list[float]] = {name: [] for name in TRAINING_SETTINGS}
    for name in TRAINING_SETTINGS:
        memory = _train_child(preset, batch, size, 0, name, threads, "memory")
        memory["training_mib"] = memory["steady_mib"] + memory["step_peak_mib"]
        results[name] = memory
    for _ in range(rounds):
        for name in TRAINING_SETTINGS:
            speed = _train_child(preset, batch, size, steps, name, threads, "speed")
            speeds[name].append(speed["img_per_s"])
    for name, values in speeds.items():
        results[name]["img_per_s"] = statistics.median(values)
        results[name]["img_per_s_all"] = values
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and print a markdown table (and JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=3, help="timed steps per process")
    parser.add_argument(
        "--train-rounds", type=int, default=3, help="speed processes per training setting"
    )
    parser.add_argument("--skip-inference", action="store_true", help="training figures only")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    inference: dict[str, dict[str, float]] = {}
    if args.quick:
        if not args.skip_inference:
            inference = measure_inference("ViT-Ti/16", 2, 32, rounds=1, repeats=1)
        training = measure_training("ViT-Ti/16", 2, 32, steps=1, threads=args.threads)
    else:
        if not args.skip_inference:
            inference = measure_inference("ViT-B/16", 8, 224, args.rounds, args.repeats)
        training = measure_training(
            "ViT-S/16",
            16,
            224,
            steps=args.train_steps,
            threads=args.threads,
            rounds=args.train_rounds,
        )
    results: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": args.threads,
        "cpu_bf16_units": cpu_has_bf16_units(),
        "load_average": list(_load_average()),
        "inference": inference,
        "training": training,
    }
    if inference:
        base = inference["fp32"]["median_img_per_s"]
        print("| inference | median img/s | min img/s | vs fp32 |\n|---|---|---|---|")
        for name, row in inference.items():
            median, low = row["median_img_per_s"], row["min_img_per_s"]
            print(f"| {name} | {median:.2f} | {low:.2f} | {median / base:.2f}x |")
    plain, checkpointed, bf16 = (training[name] for name in TRAINING_SETTINGS)
    print(
        "\n| training | img/s | steady state (MiB) | step peak (MiB) | training memory (MiB) |"
        "\n|---|---:|---:|---:|---:|"
    )
    for name, row in training.items():
        print(
            f"| {name} | {row['img_per_s']:.2f} | {row['steady_mib']:.0f} | "
            f"{row['step_peak_mib']:.0f} | {row['training_mib']:.0f} |"
        )
    print(
        f"\ncheckpointing: {plain['training_mib'] / checkpointed['training_mib']:.2f}x less "
        f"training memory ({plain['step_peak_mib'] / checkpointed['step_peak_mib']:.2f}x less "
        f"per step), {1 - checkpointed['img_per_s'] / plain['img_per_s']:.0%} slower"
    )
    units = "has bf16 units" if cpu_has_bf16_units() else "has no bf16 units: bf16 is emulated"
    print(
        f"bf16 autocast: {bf16['img_per_s'] / plain['img_per_s']:.2f}x float32's speed, "
        f"{bf16['training_mib'] / plain['training_mib']:.2f}x its training memory "
        f"(this CPU {units})"
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
