"""Shared test settings: deterministic torch, a small hypothesis budget that still explores."""

from __future__ import annotations

import os

import torch
from hypothesis import HealthCheck, settings

torch.set_num_threads(min(2, os.cpu_count() or 1))

settings.register_profile(
    "vitlib",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", parent=settings.get_profile("vitlib"), max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "vitlib"))
