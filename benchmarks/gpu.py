"""vitlib against its peers on a GPU: bf16 autocast, SDPA (flash), torch.compile, MFU.

The same implementations as ``peers.py`` (built by its builders: same hyper-parameters, random
weights, dropout off; each skipped with a note when it does not import), measured interleaved in
one process, the order rotated every sweep:

* inference images/s, ``torch.inference_mode``, bf16 autocast, ViT-B/16 at ``--infer-batch``
  (default 256);
* training images/s, ViT-B/16 at ``--train-batch`` (default 128): forward and cross-entropy
  under bf16 autocast, backward, ``torch.optim.AdamW(fused=True)`` on CUDA; the weights stay
  float32, as in mixed-precision training;
* each eagerly and, with ``--compile``, after ``torch.compile`` (vitlib with ``fullgraph=True``,
  the peers with their defaults);
* MFU: the model's FLOP rate (forward FLOPs from ``vitlib.count_flops``, training 3x forward)
  over the card's dense bf16 peak (a table of known cards, or ``--peak-tflops``), and over a
  bf16 GEMM measured in the same run;
* vitlib's own loop: ``vitlib.training.train_one_epoch`` over the same batches (already on the
  device) against the bare step loop, i.e. what the loop's bookkeeping costs. It reads no
  metric from the device per batch (metrics stay on the device until the end of the pass;
  a NaN check is read one batch late), so the ratio should be ~1.00.

Timing: CUDA events around each call after ``--warmup`` calls, ``torch.cuda.synchronize`` before
reading them; medians over ``--rounds`` sweeps, and the best call.

``--device cpu --quick`` runs everything on tiny models on the CPU in seconds (no peak table:
MFU is given against the measured bf16 GEMM only); CI runs it (``tests/test_benchmarks.py``).
On a GPU machine::

    python benchmarks/gpu.py --compile --json benchmarks/results/gpu.json \\
        --markdown benchmarks/results/gpu.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # the sibling harness: builders, perturbation, the equality check

import vitlib
from vitlib.training import train_one_epoch

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' data sheets.
PEAK_BF16_TFLOPS = {
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H200": 989.4,
    "GH200": 989.4,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
    "RTX 4090": 165.2,
}


def peak_tflops(device: torch.device, given: float | None) -> tuple[float | None, str]:
    """The card's dense bf16 peak and where the figure comes from."""
    if given is not None:
        return given, "--peak-tflops"
    if device.type != "cuda":
        return None, "no peak for a CPU; MFU is against the measured bf16 GEMM"
    name = torch.cuda.get_device_name(device)
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key in name:
            return PEAK_BF16_TFLOPS[key], f"data sheet of {key} ({name})"
    return None, f"{name} is not in the peak table; pass --peak-tflops"


class Clock:
    """Seconds of one call: CUDA events on a GPU, ``perf_counter`` on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self, call: Callable[[], object]) -> float:
        if not self.cuda:
            start = time.perf_counter()
            call()
            return time.perf_counter() - start
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        call()
        end.record()
        torch.cuda.synchronize()
        return begin.elapsed_time(end) / 1000.0


def bf16_gemm_rate(device: torch.device, n: int, clock: Clock) -> float:
    """FLOP/s of an n x n x n bf16 matmul, best of a few calls."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        torch.mm(a, b)
    best = min(clock(lambda: torch.mm(a, b)) for _ in range(10))
    return 2.0 * n**3 / best


def make_optimizer(model: nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """AdamW for every implementation alike (fused kernels on CUDA)."""
    return torch.optim.AdamW(
        model.parameters(), lr=1e-4, weight_decay=0.05, fused=device.type == "cuda"
    )


def infer_call(model: nn.Module, images: Tensor, device: torch.device) -> Callable[[], Tensor]:
    def call() -> Tensor:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
            out: Tensor = model(images)
        return out

    return call


def train_call(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    labels: Tensor,
    device: torch.device,
) -> Callable[[], None]:
    def call() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()

    return call


def time_interleaved(
    calls: dict[str, Callable[[], object]], clock: Clock, rounds: int, warmup: int
) -> dict[str, dict[str, float]]:
    """Median and best seconds per call, every call once per sweep, the order rotated."""
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for sweep in range(rounds):
        for name in peers.rotated(names, sweep):
            seconds[name].append(clock(calls[name]))
    return {
        name: {"median_s": statistics.median(values), "best_s": min(values)}
        for name, values in seconds.items()
    }


def loop_overhead(
    model: nn.Module, images: Tensor, labels: Tensor, device: torch.device, batches: int
) -> dict[str, float]:
    """Seconds per batch of ``train_one_epoch`` and of the bare loop, same work (fp32 weights,
    bf16 autocast, clipping at 1.0, AdamW), each over ``batches`` batches already on the
    device, best of three passes."""
    batches_list = [(images, labels)] * batches
    optimizer = make_optimizer(model, device)
    params = [p for p in model.parameters() if p.requires_grad]

    def bare() -> None:
        model.train()
        for batch_images, batch_labels in batches_list:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                loss = F.cross_entropy(model(batch_images), batch_labels)
            (loss * batch_images.shape[0]).backward()
            for p in params:
                if p.grad is not None:
                    p.grad.div_(batch_images.shape[0])
            nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    def vitlib_loop() -> None:
        train_one_epoch(
            model,
            batches_list,
            optimizer,
            loss_fn=nn.CrossEntropyLoss(),
            grad_clip_norm=1.0,
            amp_dtype=torch.bfloat16,
            device=device,
            progress=False,
        )

    clock = Clock(device)
    result = time_interleaved({"bare": bare, "vitlib": vitlib_loop}, clock, rounds=3, warmup=1)
    return {
        "bare_s_per_batch": result["bare"]["best_s"] / batches,
        "vitlib_s_per_batch": result["vitlib"]["best_s"] / batches,
        "ratio": result["bare"]["best_s"] / result["vitlib"]["best_s"],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu with --quick")
    parser.add_argument("--models", default=",".join(peers.IMPLEMENTATIONS))
    parser.add_argument("--preset", default="ViT-B/16")
    parser.add_argument("--infer-batch", type=int, default=256)
    parser.add_argument("--train-batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--peak-tflops", type=float, help="the card's dense bf16 peak")
    parser.add_argument("--quick", action="store_true", help="tiny model and batches")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Measure, print a markdown table, write JSON/markdown when asked; 0 on success."""
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU machine, or pass --device cpu --quick")
        return 2
    if args.quick:
        size, infer_batch, train_batch, rounds, warmup = peers.tiny(), 2, 4, 2, 1
    else:
        size = peers.preset(args.preset)
        infer_batch, train_batch = args.infer_batch, args.train_batch
        rounds, warmup = args.rounds, args.warmup
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    implementations, skipped = peers.load_implementations(args.models.split(","))
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    cfg = size.config
    flops = vitlib.count_flops(cfg)
    clock = Clock(device)
    models = {}
    for name, implementation in implementations.items():
        torch.manual_seed(0)
        model = implementation.build(cfg)
        peers.perturb(model, seed=10)
        models[name] = model.to(device)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(train_batch, cfg.in_channels, *cfg.image_hw, generator=generator)
    labels = torch.randint(0, cfg.num_classes, (train_batch,), generator=generator)
    images, labels = images.to(device), labels.to(device)
    infer_images = torch.randn(infer_batch, cfg.in_channels, *cfg.image_hw, generator=generator).to(
        device
    )

    variants: dict[str, nn.Module] = {}
    for name, model in models.items():
        variants[name] = model
        if args.compile:
            full = name == "vitlib"
            variants[f"{name} compiled"] = torch.compile(model, fullgraph=full)
    infer_calls: dict[str, Callable[[], object]] = {}
    train_calls: dict[str, Callable[[], object]] = {}
    for name, model in variants.items():
        infer_calls[name] = infer_call(model, infer_images, device)
        optimizer = make_optimizer(model, device)
        train_calls[name] = train_call(model, optimizer, images, labels, device)
    for model in models.values():
        model.eval()
    inference = time_interleaved(infer_calls, clock, rounds, warmup)
    for model in models.values():
        model.train()
    training = time_interleaved(train_calls, clock, rounds, warmup)
    gemm = bf16_gemm_rate(device, 256 if args.quick else 8192, clock)
    peak, peak_source = peak_tflops(device, args.peak_tflops)
    loop = loop_overhead(models["vitlib"], images, labels, device, batches=4 if args.quick else 20)

    rows = []
    for name in variants:
        row: dict[str, Any] = {"implementation": name}
        for task, timings, batch, factor in (
            ("inference", inference, infer_batch, 1),
            ("training", training, train_batch, 3),
        ):
            rate = batch / timings[name]["median_s"]
            row[f"{task}_img_per_s"] = rate
            row[f"{task}_best_img_per_s"] = batch / timings[name]["best_s"]
            row[f"{task}_share_of_gemm"] = rate * flops * factor / gemm
            row[f"{task}_mfu"] = None if peak is None else rate * flops * factor / (peak * 1e12)
        rows.append(row)
    report = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "preset": size.label,
        "infer_batch": infer_batch,
        "train_batch": train_batch,
        "rounds": rounds,
        "forward_flops_per_image": flops,
        "bf16_gemm_tflops": gemm / 1e12,
        "peak_bf16_tflops": peak,
        "peak_source": peak_source,
        "versions": {name: impl.version for name, impl in implementations.items()},
        "skipped": skipped,
        "rows": rows,
        "vitlib_loop": loop,
    }
    text = markdown(report)
    print(text)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if args.markdown is not None:
        args.markdown.write_text(text + "\n", encoding="utf-8")
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def markdown(report: dict[str, Any]) -> str:
    """The report as a markdown table with its context."""
    lines = [
        f"# vitlib against its peers on {report['device']}, {report['date']}",
        "",
        f"{report['preset']}, inference batch {report['infer_batch']}, training batch "
        f"{report['train_batch']}, bf16 autocast, {report['rounds']} interleaved sweeps, torch "
        f"{report['torch']}. bf16 GEMM measured: {report['bf16_gemm_tflops']:.1f} TFLOP/s; "
        f"peak: {report['peak_bf16_tflops'] or '-'} TFLOP/s ({report['peak_source']}).",
        "",
        "| implementation | inference img/s (best) | MFU | % of bf16 GEMM "
        "| training img/s (best) | MFU | % of bf16 GEMM |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['implementation']} | {row['inference_img_per_s']:.1f} "
            f"({row['inference_best_img_per_s']:.1f}) | {_pct(row['inference_mfu'])} | "
            f"{_pct(row['inference_share_of_gemm'])} | {row['training_img_per_s']:.1f} "
            f"({row['training_best_img_per_s']:.1f}) | {_pct(row['training_mfu'])} | "
            f"{_pct(row['training_share_of_gemm'])} |"
        )
    loop = report["vitlib_loop"]
    lines += [
        "",
        f"vitlib's train_one_epoch against the bare loop (same work): "
        f"{loop['vitlib_s_per_batch'] * 1000:.1f} vs {loop['bare_s_per_batch'] * 1000:.1f} "
        f"ms per batch, {loop['ratio']:.3f}x the bare loop's speed.",
    ]
    if report["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in report["skipped"].items())]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
