"""What the class-token shortcut saves: ``optimize_for_inference(model, "fp32")`` against the
plain ``ViT.forward``, in one process.

Two copies of one model (same weights, dropout off): the plain model (every token through every
block, as every peer computes) and its ``optimize_for_inference(model, "fp32")`` copy (the last
block computes only the class token's output). Each round times both, the order alternating,
under ``torch.inference_mode``; the report gives the median throughput of each, the ratio of the
medians and the median of the per-round ratios, and ``count_flops``'s saving for comparison.
Before timing, the logits of the two copies are compared (they must agree to 1e-5). Training
has no shortcut: every token's output is needed for the gradients of the blocks.

    python benchmarks/class_token_shortcut.py                      # ViT-S/16, ~3 min
    python benchmarks/class_token_shortcut.py --preset ViT-B/16 --rounds 6
    python benchmarks/class_token_shortcut.py --quick --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import vitlib

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import fix_malloc  # the sibling harness's malloc thresholds


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _models(preset: str, quick: bool) -> tuple[nn.Module, nn.Module]:
    options: dict[str, Any] = {}
    if quick:
        options.update(img_size=32, patch_size=8, num_transformer_layers=2, embedding_dim=64)
        options.update(num_heads=4, mlp_size=128, num_classes=10)
    torch.manual_seed(0)
    full = vitlib.create_model(preset, **options).eval()
    return vitlib.optimize_for_inference(full, "fp32"), full


def measure(preset: str, *, rounds: int, batch: int, quick: bool) -> dict[str, Any]:
    """Time both copies, interleaved; return the figures (seconds per call kept)."""
    shortcut, full = _models(preset, quick)
    cfg = full.config
    images = torch.randn(batch, cfg.in_channels, *cfg.image_hw)
    with torch.inference_mode():
        difference = (shortcut(images) - full(images)).abs().max().item()
    if difference > 1e-5:
        raise RuntimeError(f"the shortcut changed the logits by {difference:.2e} (> 1e-5)")

    def infer(model: nn.Module) -> Callable[[], object]:
        def call() -> Tensor:
            with torch.inference_mode():
                return model(images)

        return call

    results: dict[str, Any] = {}
    for task, make, size in (("inference", infer, batch),):
        calls = {"shortcut": make(shortcut), "full": make(full)}
        for call in calls.values():
            call()  # warm-up
        seconds: dict[str, list[float]] = {"shortcut": [], "full": []}
        for index in range(rounds):
            order = ("shortcut", "full") if index % 2 == 0 else ("full", "shortcut")
            for name in order:
                seconds[name].append(_timed(calls[name]))
        medians = {name: statistics.median(values) for name, values in seconds.items()}
        results[task] = {
            "batch": size,
            "shortcut_images_per_s": size / medians["shortcut"],
            "full_images_per_s": size / medians["full"],
            "speedup": medians["full"] / medians["shortcut"],
            "speedup_paired": statistics.median(
                f / s for f, s in zip(seconds["full"], seconds["shortcut"], strict=True)
            ),
            "seconds": seconds,
        }
    results["flops_saved"] = 1 - vitlib.count_flops(
        cfg, class_token_shortcut=True
    ) / vitlib.count_flops(cfg)
    results["max_logit_difference"] = difference
    return results


def markdown(preset: str, results: dict[str, Any]) -> str:
    """The report as a Markdown table."""
    lines = [
        f"{preset}: `count_flops` says the shortcut saves {results['flops_saved']:.1%} of the "
        f"forward FLOPs; logits differ by {results['max_logit_difference']:.1e}.",
        "",
        "| task | batch | with shortcut, img/s | without, img/s | speed-up (paired) |",
        "|---|---:|---:|---:|---:|",
    ]
    for task in ("inference",):
        row = results[task]
        lines.append(
            f"| {task} | {row['batch']} | {row['shortcut_images_per_s']:.2f} | "
            f"{row['full_images_per_s']:.2f} | {row['speedup']:.3f} ({row['speedup_paired']:.3f}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="ViT-S/16")
    parser.add_argument("--rounds", type=int, default=8, help="timed calls of each (8)")
    parser.add_argument("--batch-size", type=int, default=8, help="inference batch (8)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a tiny model: a smoke test")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    print(f"malloc: {fix_malloc()}")
    torch.set_num_threads(args.threads)
    results = measure(
        args.preset,
        rounds=args.rounds,
        batch=args.batch_size,
        quick=args.quick,
    )
    label = f"{args.preset} shrunk to 32 px, 2 layers (--quick)" if args.quick else args.preset
    print(markdown(label, results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
