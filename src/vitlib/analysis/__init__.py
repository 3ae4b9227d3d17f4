"""What a model learned and how it is built: the paper's Figure 6 and 7 analyses (as tensors in
`vitlib.analysis.attention`, as pictures in `vitlib.analysis.figures`), the training and
evaluation plots (`vitlib.analysis.plots`), the per-layer summary and the generated tables."""

from __future__ import annotations

from vitlib.analysis.attention import (
    HeadFusion,
    attention_maps,
    attention_rollout,
    embedding_filters,
    mean_attention_distance,
    position_embedding_similarity,
    rollout_map,
)

__all__ = [
    "HeadFusion",
    "attention_maps",
    "attention_rollout",
    "embedding_filters",
    "mean_attention_distance",
    "position_embedding_similarity",
    "rollout_map",
]
