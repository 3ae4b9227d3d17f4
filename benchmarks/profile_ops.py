"""Where the time goes beyond the GEMMs: vitlib's operators beside each peer's, from one profile.

For each implementation that imports (the builders of ``peers.py``: same hyper-parameters,
random weights, dropout off), ``torch.profiler`` records ``--steps`` calls after a warm-up, for
ViT-S/16 inference at batch 8 and training (forward, cross-entropy, backward, AdamW step) at
batch 16, and the script prints one table per task: the self-CPU milliseconds per call of every
ATen operator that takes >= 0.5% of anybody's time, with the call counts, side by side. An
operator that only vitlib calls, or that vitlib calls more often, is work a peer does without.

The profile is a diagnosis, not a speed figure (the profiler adds overhead per operator, and the
machine's load moves the milliseconds): ``peers.py`` measures the speed. glibc's malloc
thresholds are fixed first, as in ``peers.py``; without that, the element-wise operators (the
``copy_`` of each ``addmm``'s bias, the residual ``add``, the layer norms) pay fresh page faults
on every call and look several times as expensive as they are.

Run (peers need the venv of ``benchmarks/setup_peers_venv.sh``)::

    /work/peers-venv/bin/python benchmarks/profile_ops.py --models vitlib,timm,transformers
    python benchmarks/profile_ops.py --models vitlib --json ops.json
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # the sibling harness: builders, inputs, the optimizer

MIN_SHARE = 0.005


def _profile(call: Callable[[], object], steps: int) -> dict[str, tuple[float, int]]:
    """Self-CPU milliseconds per step and calls per step of each operator."""
    call()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            call()
    found: dict[str, tuple[float, int]] = {}
    for event in prof.key_averages():
        if event.key.startswith(("aten::", "mkldnn::")):
            found[event.key] = (event.self_cpu_time_total / 1000 / steps, event.count // steps)
    return found


def profile_task(
    kind: str, models: dict[str, nn.Module], cfg: Any, batch: int, steps: int
) -> dict[str, dict[str, tuple[float, int]]]:
    """One profile per implementation, for ``kind`` ("infer" or "train")."""
    images, labels = peers.inputs(cfg, batch, seed=0)
    results: dict[str, dict[str, tuple[float, int]]] = {}
    for name, model in models.items():
        if kind == "infer":
            model.eval()
            results[name] = _profile(functools.partial(peers.infer, model, images), steps)
        else:
            model.train()
            optimizer = peers.make_optimizer(model)
            step = functools.partial(peers.train_step, model, optimizer, images, labels)
            results[name] = _profile(step, steps)
    return results


def table(results: dict[str, dict[str, tuple[float, int]]]) -> str:
    """Markdown: operators by vitlib's time, ms per step and calls per step per implementation."""
    names = list(results)
    totals = {name: sum(ms for ms, _ in ops.values()) for name, ops in results.items()}
    keep = {
        op
        for name, ops in results.items()
        for op, (ms, _) in ops.items()
        if ms >= MIN_SHARE * totals[name]
    }
    first = results[names[0]]
    order = sorted(keep, key=lambda op: -first.get(op, (0.0, 0))[0])
    lines = [
        "| operator | " + " | ".join(f"{n}: ms (calls)" for n in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for op in order:
        cells = []
        for name in names:
            ms, count = results[name].get(op, (0.0, 0))
            cells.append(f"{ms:.1f} ({count})" if count else "-")
        lines.append(f"| `{op}` | " + " | ".join(cells) + " |")
    lines.append(
        "| **all operators** | " + " | ".join(f"**{totals[n]:.1f}**" for n in names) + " |"
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(peers.IMPLEMENTATIONS))
    parser.add_argument("--preset", default="ViT-S/16")
    parser.add_argument("--steps", type=int, default=3, help="profiled calls per task")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Print one markdown table per task; 0 on success."""
    args = parse_args(argv)
    print(f"malloc: {peers.fix_malloc()}")
    torch.set_num_threads(args.threads)
    implementations, skipped = peers.load_implementations(args.models.split(","))
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    cfg = peers.preset(args.preset).config
    models: dict[str, nn.Module] = {}
    for name, implementation in implementations.items():
        torch.manual_seed(0)
        models[name] = implementation.build(cfg)
    report: dict[str, Any] = {"preset": args.preset, "threads": args.threads, "tasks": {}}
    for kind, batch in (("infer", 8), ("train", 16)):
        results = profile_task(kind, models, cfg, batch, args.steps)
        report["tasks"][f"{kind}-b{batch}"] = results
        print(
            f"\n### {args.preset} {'inference' if kind == 'infer' else 'training'}, "
            f"batch {batch}: self-CPU ms per step (calls per step)\n"
        )
        print(table(results))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
