"""Peak CPU memory of the `vitlib.analysis` functions on ViT-B/16 at 224 for one image.

Each analysis runs in a fresh process (so that one's high-water mark cannot hide another's):
the process builds ViT-B/16 (seeded, eval mode), notes its resident memory, runs the analysis
once and reports its peak resident memory (``ru_maxrss``) and the peak above the model. A plain
``model(images)`` under ``torch.no_grad()`` is the reference. docs/analysis.md states the result.

    python benchmarks/analysis_memory.py
"""

from __future__ import annotations

import multiprocessing
import resource
from collections.abc import Callable
from typing import Final

import torch

import vitlib
from vitlib import analysis

MIB: Final = 2**20


def _analyses() -> dict[str, Callable[[vitlib.ViT, torch.Tensor], object]]:
    def forward(model: vitlib.ViT, images: torch.Tensor) -> object:
        with torch.no_grad():
            return model(images)

    return {
        "model(images), no_grad (reference)": forward,
        "attention_maps (all 12 layers kept)": analysis.attention_maps,
        "attention_maps(layers=[5])": lambda m, x: analysis.attention_maps(m, x, layers=[5]),
        "attention_rollout": analysis.attention_rollout,
        "rollout_map": analysis.rollout_map,
        "mean_attention_distance": analysis.mean_attention_distance,
        "position_embedding_similarity": lambda m, x: analysis.position_embedding_similarity(m),
        "embedding_filters(k=28)": lambda m, x: analysis.embedding_filters(m, k=28),
    }


def _resident_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / MIB


def _measure(name: str) -> tuple[float, float]:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = vitlib.create_model("ViT-B/16").eval()
    images = torch.randn(1, 3, 224, 224)
    model_mib = _resident_mib()
    _analyses()[name](model, images)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return peak_mib, peak_mib - model_mib


def main() -> None:
    context = multiprocessing.get_context("spawn")
    print(f"torch {torch.__version__}, ViT-B/16 at 224, one image, CPU, float32")
    print(f"{'analysis':40} {'peak RSS':>10} {'above the model':>16}")
    for name in _analyses():
        with context.Pool(1) as pool:
            peak, extra = pool.apply(_measure, (name,))
        print(f"{name:40} {peak:8.0f} MiB {extra:12.0f} MiB")


if __name__ == "__main__":
    main()
