"""Where the time goes beyond the GEMMs: vitlib's operators beside each peer's, from one profile.

For each implementation that imports (the builders of ``peers.py``: same hyper-parameters,
random weights, dropout off), ``torch.profiler`` records ``--steps`` calls after a warm-up, for
ViT-S/16 inference at batch 8 and training (forward, cross-entropy, backward, AdamW step) at
batch 16, call by call in rotated order so that the machine's load falls on all alike; the
script prints one table per task: the self-CPU milliseconds per call of every
ATen operator that takes >= 0.5% of anybody's time, with the call counts, side by side. An
operator that only vitlib calls, or that vitlib calls more often, is work a peer does without.
A second table sums the operators into four kinds of work: the GEMMs of the linear layers, the
attention (the fused kernels, or ``bmm`` and ``softmax`` where a peer does not fuse it), the
element-wise and copying passes (layer norms, GELU, residual adds, bias copies and sums, the
head split and merge), and the optimiser.

``--compiled`` adds vitlib under ``torch.compile(fullgraph=True)`` (inductor), with inductor's
kernel profiling on, so that the kernels it generates show up beside the ATen operators it still
calls (one row, "inductor kernels"): what compiling changes, kind by kind.

The profile is a diagnosis, not a speed figure (the profiler adds overhead per operator, and the
machine's load moves the milliseconds): ``peers.py`` measures the speed. glibc's malloc
thresholds are fixed first, as in ``peers.py``; without that, the element-wise operators (the
``copy_`` of each ``addmm``'s bias, the residual ``add``, the layer norms) pay fresh page faults
on every call and look several times as expensive as they are.

Run (peers need the venv of ``benchmarks/setup_peers_venv.sh``)::

    /work/peers-venv/bin/python benchmarks/profile_ops.py --models vitlib,timm,transformers
    python benchmarks/profile_ops.py --models vitlib --compiled --json ops.json
    python benchmarks/profile_ops.py --models vitlib --compiled --preset tiny --steps 1  # seconds
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch._inductor import config as inductor_config
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # the sibling harness: builders, inputs, the optimizer

MIN_SHARE = 0.005
COMPILED = "vitlib compiled"
INDUCTOR_KERNELS = "inductor kernels"  # the row that sums every kernel inductor generated
KINDS = ("GEMMs", "attention", "element-wise and copies", "optimiser")
_GEMMS = ("aten::mm", "aten::addmm")
_UNFUSED_ATTENTION = (
    "aten::bmm",
    "aten::baddbmm",
    "aten::_softmax",
    "aten::_softmax_backward_data",
)
OPTIMISER = "optimiser: "  # the prefix of the operators that run inside the optimiser


def kind_of(op: str) -> str:
    """Which of `KINDS` an operator's time counts as.

    The patch embedding's convolution counts as a GEMM; ``bmm`` and ``softmax`` count as
    attention (in a ViT only the attention of a peer that does not fuse it calls them).
    """
    if op in _GEMMS or "convolution" in op:
        return "GEMMs"
    if op in _UNFUSED_ATTENTION or "scaled_dot_product" in op or "attention" in op:
        return "attention"
    if op.startswith(OPTIMISER):
        return "optimiser"
    return "element-wise and copies"


def _is_inductor_kernel(key: str) -> bool:
    """Whether a profiler event is a kernel inductor generated (``graph_0_cpp_fused_...``)."""
    return key.startswith("graph_") and "_fused" in key


def _in_optimizer(event: Any) -> bool:
    """Whether a profiler event ran inside the optimiser (its ``step()`` or ``zero_grad()``)."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("Optimizer."):
            return True
        parent = parent.cpu_parent
    return False


def _profile(call: Callable[[], object], into: dict[str, list[float]]) -> None:
    """Profile one call; add each operator's self-CPU microseconds and calls to ``into``.

    An operator that ran inside the optimiser gets a row of its own, prefixed `OPTIMISER`
    (AdamW's per-parameter ``add_`` is not the residual ``add_``); inductor's kernels are summed
    into one row, `INDUCTOR_KERNELS`.
    """
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    for event in prof.events():
        if event.name.startswith(("aten::", "mkldnn::")):
            key = OPTIMISER + event.name if _in_optimizer(event) else event.name
        elif _is_inductor_kernel(event.name):
            key = INDUCTOR_KERNELS
        else:
            continue
        found = into.setdefault(key, [0.0, 0])
        found[0] += event.self_cpu_time_total
        found[1] += 1


def profile_task(
    kind: str, models: dict[str, nn.Module], cfg: Any, batch: int, steps: int
) -> dict[str, dict[str, tuple[float, int]]]:
    """Per implementation, for ``kind`` ("infer" or "train"): each operator's self-CPU
    milliseconds and calls per step.

    The implementations are profiled call by call in rotated order (A B, B A, ...), so that a
    change in the shared machine's load falls on all of them alike.
    """
    images, labels = peers.inputs(cfg, batch, seed=0)
    calls: dict[str, Callable[[], object]] = {}
    for name, model in models.items():
        if kind == "infer":
            model.eval()
            calls[name] = functools.partial(peers.infer, model, images)
        else:
            model.train()
            optimizer = peers.make_optimizer(model)
            calls[name] = functools.partial(peers.train_step, model, optimizer, images, labels)
    for call in calls.values():
        call()
        call()  # a compiled call compiles in the first and may recompile once in the second
    totals: dict[str, dict[str, list[float]]] = {name: {} for name in calls}
    for index in range(steps):
        for name in peers.rotated(list(calls), index):
            _profile(calls[name], totals[name])
    return {
        name: {op: (us / 1000 / steps, int(count) // steps) for op, (us, count) in ops.items()}
        for name, ops in totals.items()
    }


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


def kinds(ops: dict[str, tuple[float, int]]) -> dict[str, float]:
    """Milliseconds per step of each of `KINDS` (inductor's kernels are element-wise work)."""
    found = dict.fromkeys(KINDS, 0.0)
    for op, (ms, _) in ops.items():
        found[kind_of(op)] += ms
    return found


def kinds_table(results: dict[str, dict[str, tuple[float, int]]]) -> str:
    """Markdown: ms per step and share of each kind of work, per implementation."""
    names = list(results)
    sums = {name: kinds(ops) for name, ops in results.items()}
    lines = [
        "| work | " + " | ".join(f"{n}: ms (share)" for n in names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for kind in (*KINDS, "all"):
        cells = []
        for name in names:
            total = sum(sums[name].values())
            ms = total if kind == "all" else sums[name][kind]
            cells.append(f"{ms:.1f} ({ms / total:.0%})" if total else "-")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(peers.IMPLEMENTATIONS))
    parser.add_argument("--preset", default="ViT-S/16", help='a vitlib preset, or "tiny"')
    parser.add_argument(
        "--compiled",
        action="store_true",
        help=f'also profile "{COMPILED}": torch.compile(fullgraph=True), minutes for ViT-S/16',
    )
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
    cfg = (peers.tiny() if args.preset == "tiny" else peers.preset(args.preset)).config
    models: dict[str, nn.Module] = {}
    for name, implementation in implementations.items():
        torch.manual_seed(0)
        models[name] = implementation.build(cfg)
    if args.compiled:
        if "vitlib" not in models:
            message = f"--compiled profiles vitlib compiled: add vitlib to --models {args.models!r}"
            print(message, file=sys.stderr)
            return 2
        inductor_config.cpp.enable_kernel_profile = True  # name each generated kernel
        compiled = torch.compile(copy.deepcopy(models["vitlib"]), fullgraph=True)
        models[COMPILED] = cast("nn.Module", compiled)  # an OptimizedModule, typed as a callable
    report: dict[str, Any] = {"preset": args.preset, "threads": args.threads, "tasks": {}}
    for kind, batch in (("infer", 8), ("train", 16)):
        results = profile_task(kind, models, cfg, batch, args.steps)
        report["tasks"][f"{kind}-b{batch}"] = results
        print(
            f"\n### {args.preset} {'inference' if kind == 'infer' else 'training'}, "
            f"batch {batch}: self-CPU ms per step (calls per step)\n"
        )
        print(table(results))
        print("\nThe same, by kind of work:\n")
        print(kinds_table(results))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
