"""Data-parallel training with ``torch.distributed``, started by ``torchrun``.

``distributed_session`` reads the variables ``torchrun`` sets, joins the process group (NCCL on
CUDA, gloo on CPU) and leaves it on exit; without them (or with ``WORLD_SIZE=1``) everything
runs in a single process.

`wrap_model` replicates the model (DDP) or shards it (FSDP2, `vitlib.training.fsdp`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from vitlib.training.errors import RankFailedError
from vitlib.training.fsdp import (
    Parallel,
    check_parallel,
    fsdp_gradient_sync,
    is_fsdp,
    mixed_precision_policy,
    shard_model,
)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that logs, saves and plots."""
        return self.rank == 0

    def device(self) -> torch.device:
        """``cuda:LOCAL_RANK`` when CUDA is available, else the CPU."""
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(
            f"environment variable {name}={raw!r} is not an integer; expected the value "
            f"torchrun sets. Launch with torchrun or unset {name}."
        ) from None


def current_context() -> DistributedContext:
    """The context of the process group already joined, or a single-process context."""
    if dist.is_available() and dist.is_initialized():
        return DistributedContext(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=_env_int("LOCAL_RANK", 0),
        )
    return DistributedContext()


def init_distributed(backend: str | None = None) -> DistributedContext:
    """Join the process group described by torchrun's environment variables, if there is one.

    Args:
        backend: ``"gloo"`` or ``"nccl"``; default NCCL when CUDA is available, else gloo.

    Returns:
        The context; single-process when ``WORLD_SIZE`` is unset or 1. Joining twice is harmless.
    """
    if dist.is_available() and dist.is_initialized():
        return current_context()
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistributedContext()
    if not dist.is_available():
        raise RuntimeError(
            f"WORLD_SIZE={world_size} asks for {world_size} processes, but this PyTorch build "
            "has no torch.distributed; install a build with it or launch a single process."
        )
    local_rank = _env_int("LOCAL_RANK", 0)
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return current_context()


@contextmanager
def distributed_session(backend: str | None = None) -> Iterator[DistributedContext]:
    """Join the torchrun process group for a ``with`` block, then destroy it cleanly."""
    joined_here = not (dist.is_available() and dist.is_initialized())
    context = init_distributed(backend)
    try:
        yield context
    finally:
        if joined_here and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (or the model itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def wrap_model(
    model: nn.Module,
    context: DistributedContext,
    parallel: Parallel = "ddp",
    *,
    amp_dtype: torch.dtype | None = None,
) -> nn.Module:
    """Prepare ``model`` for a multi-process run: replicate it (DDP) or shard it (FSDP).

    Args:
        model: The model, on its training device, with the same weights on every rank.
        context: Where this process stands; in a single process ``"ddp"`` returns ``model``.
        parallel: ``"ddp"`` wraps it in ``DistributedDataParallel``; ``"fsdp"`` shards it in place
            with ``fully_shard`` (one unit per encoder block plus the root) and returns it.
        amp_dtype: Under ``"fsdp"``, ``torch.bfloat16`` computes with bf16 parameters and reduces
            gradients in float32 (`vitlib.training.fsdp.mixed_precision_policy`).

    Raises:
        TrainingConfigError: An unknown ``parallel``, ``"fsdp"`` without a process group, or a
            model without encoder blocks to shard.
    """
    check_parallel(parallel)
    if parallel == "fsdp":
        device = next(model.parameters()).device
        return shard_model(model, mixed_precision=mixed_precision_policy(amp_dtype, device))
    if not context.enabled or isinstance(model, DistributedDataParallel):
        return model
    device = next(model.parameters()).device
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def gradient_sync(model: nn.Module, enabled: bool) -> AbstractContextManager[Any]:
    """A context in which backward reduces gradients over the ranks only if ``enabled``.

    ``DistributedDataParallel``'s ``no_sync()`` or an FSDP module's
    ``set_requires_gradient_sync(False)`` when not ``enabled`` (a micro-batch of gradient
    accumulation that does not step), else nothing.
    """
    if enabled:
        return nullcontext()
    if isinstance(model, DistributedDataParallel):
        return model.no_sync()
    if is_fsdp(model):
        return fsdp_gradient_sync(model, enabled)
    return nullcontext()


def is_sharded(loader: object) -> bool:
    """Whether ``loader`` is sharded by a ``DistributedSampler`` (so metrics need summing)."""
    sampler = getattr(loader, "sampler", None)
    return isinstance(sampler, DistributedSampler) and dist.is_available() and dist.is_initialized()


def _collective_device() -> torch.device:
    """Where the tensors of a collective live: the current GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sums(values: Sequence[float]) -> list[float]:
    """Sum ``values`` over all ranks in float64 (counts stay exact); identity in one process."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    totals = torch.tensor(list(values), dtype=torch.float64, device=_collective_device())
    dist.all_reduce(totals, op=dist.ReduceOp.SUM)
    return [float(value) for value in totals.tolist()]


def broadcast_text(text: str | None) -> str | None:
    """Rank 0's ``text`` on every rank (what the others pass is ignored); identity in one
    process. A collective: every rank calls it at the same point. Plain bytes, no pickle."""
    if not (dist.is_available() and dist.is_initialized()):
        return text
    device = _collective_device()
    data = b"" if text is None else text.encode("utf-8")
    size = torch.tensor([-1 if text is None else len(data)], dtype=torch.int64, device=device)
    dist.broadcast(size, src=0)
    length = int(size.item())
    if length < 0:
        return None
    buffer = torch.zeros(length, dtype=torch.uint8, device=device)
    if dist.get_rank() == 0:
        buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(device)
    if length:
        dist.broadcast(buffer, src=0)
    return bytes(buffer.cpu().tolist()).decode("utf-8")


def on_main_rank(action: Callable[[], object]) -> None:
    """Run ``action`` on rank 0 alone (in one process: run it), and let every rank know how it
    went.

    A collective: every rank calls it at the same point. If ``action`` raises on rank 0, rank 0
    re-raises its error and every other rank raises
    [`RankFailedError`][vitlib.training.RankFailedError] with its message, instead of waiting at
    the next collective for a rank that has stopped.
    """
    context = current_context()
    if not context.enabled:
        action()
        return
    failure: Exception | None = None
    if context.is_main:
        try:
            action()
        except Exception as error:  # every kind: the other ranks must hear of it
            failure = error
    message = broadcast_text(None if failure is None else f"{type(failure).__name__}: {failure}")
    if failure is not None:
        raise failure
    if message is not None:
        raise RankFailedError(f"rank 0 stopped the run: {message}")


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
