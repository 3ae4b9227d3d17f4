"""Memory per process of DDP against FSDP2 (``fit(..., parallel=...)``), on CPU processes (gloo).

    python benchmarks/fsdp_memory.py                      # ViT-B/16, 2 processes
    python benchmarks/fsdp_memory.py --preset ViT-S/16 --nproc 2 --json out.json
    python benchmarks/fsdp_memory.py --quick              # a tiny model: a smoke test

Each mode runs under ``torchrun --nproc_per_node N`` in processes of its own, which build the
model, replicate (``wrap_model(..., "ddp")``) or shard it (``"fsdp"``: one unit per encoder
block plus the root), build AdamW and take two training steps (forward, cross-entropy, backward,
step) on random images. Every process reports, in MiB:

* parameters, gradients and optimiser state: the bytes of the tensors this process holds (the
  local shards under FSDP), counted after the first step;
* peak: the largest resident set during the second step (``VmHWM`` after
  ``/proc/self/clear_refs``); glibc hands every block over 64 KiB back to the system on ``free``
  (``mallopt``), so the resident set follows the live tensors, not the allocator's cache. It
  includes the Python interpreter, torch and the process group (the ``baseline`` column: the
  resident set before the model is built), the activations of the batch and, under FSDP, the
  gathered parameters of the unit being computed.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

MIB = 2**20
QUICK: dict[str, Any] = {"preset": "ViT-Ti/16", "image_size": 32, "layers": 2}


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}; this benchmark needs Linux")


def _bytes(tensors: list[torch.Tensor]) -> int:
    total = 0
    for tensor in tensors:
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor  # DTensor shards
        total += local.numel() * local.element_size()
    return total


def worker(args: argparse.Namespace) -> None:
    """One process of a torchrun launch: build, wrap, train two steps, report its memory."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD: blocks over 64 KiB come from mmap...
    libc.mallopt(-1, 0)  # M_TRIM_THRESHOLD: ...and freed memory goes back at once
    import vitlib
    from vitlib.training import TrainConfig, build_optimizer, distributed_session
    from vitlib.training.distributed import wrap_model

    with distributed_session() as context:
        baseline = _status_kib("VmRSS") * 1024
        torch.manual_seed(0)
        overrides = {} if args.layers is None else {"num_transformer_layers": args.layers}
        model = vitlib.create_model(args.preset, img_size=args.image_size, **overrides)
        trained = wrap_model(model, context, args.mode)
        optimizer = build_optimizer(model, TrainConfig())
        images = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
        labels = torch.randint(0, model.config.num_classes, (args.batch_size,))
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        report: dict[str, Any] = {"rank": context.rank, "baseline": baseline}
        for step in range(2):
            if step == 1:
                with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
                    refs.write("5")  # reset VmHWM to the current resident set
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(trained(images), labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            if step == 0:
                report["gradients"] = _bytes([p.grad for p in parameters if p.grad is not None])
            optimizer.step()
        report["peak"] = _status_kib("VmHWM") * 1024
        report["parameters"] = _bytes(parameters)
        states = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
        report["optimizer"] = _bytes([t for t in states if t.dim() > 0])  # not the step counts
        (Path(args.out) / f"{args.mode}_rank{context.rank}.json").write_text(json.dumps(report))


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run each mode under torchrun; one row per (mode, rank)."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as out:
        for mode in ("ddp", "fsdp"):
            command = [
                sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", str(args.nproc), __file__, "--worker", "--mode", mode,
                "--out", out, "--preset", args.preset, "--image-size", str(args.image_size),
                "--batch-size", str(args.batch_size),
                *([] if args.layers is None else ["--layers", str(args.layers)]),
            ]  # fmt: skip
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            subprocess.run(command, check=True, env=env)
            for rank in range(args.nproc):
                row = json.loads((Path(out) / f"{mode}_rank{rank}.json").read_text())
                rows.append({"mode": mode, **row})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, in MiB."""
    names = ("parameters", "gradients", "optimizer", "peak", "baseline")
    lines = [
        "| mode | rank | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for row in rows:
        values = " | ".join(f"{row[name] / MIB:,.0f}" for name in names)
        lines.append(f"| {row['mode']} | {row['rank']} | {values} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table (and write ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="ViT-B/16")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--layers", type=int, help="override the preset's depth")
    parser.add_argument("--batch-size", type=int, default=2, help="per process")
    parser.add_argument("--nproc", type=int, default=2, help="processes (CPU, gloo)")
    parser.add_argument("--threads", type=int, default=1, help="OMP threads per process")
    parser.add_argument("--quick", action="store_true", help="a tiny model (smoke test)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("ddp", "fsdp"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            setattr(args, name, value)
    if args.worker:
        worker(args)
        return 0
    rows = measure(args)
    size = f"{args.preset} at {args.image_size}px, batch {args.batch_size} per process"
    print(f"{size}, {args.nproc} CPU processes (gloo), AdamW, MiB per process\n")
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
