"""Fully sharded data parallelism (FSDP2, ``torch.distributed.fsdp.fully_shard``) for `fit`.

Each process keeps ``1/N`` of every parameter, gradient and optimiser state: one FSDP unit per
[`TransformerEncoderBlock`][vitlib.blocks.TransformerEncoderBlock] plus the root, as torchtitan
shards transformers. Checkpoints stay the usual ones: `full_model_state` and
`full_optimizer_state` gather the full tensors onto rank 0's CPU, and `load_optimizer_state`
shards them onto however many processes resume. docs/training.md says more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from vitlib._checks import check_choice
from vitlib.blocks import TransformerEncoderBlock
from vitlib.training.errors import TrainingConfigError

Parallel = Literal["ddp", "fsdp"]
PARALLEL_MODES: Final[tuple[str, ...]] = ("ddp", "fsdp")


def check_parallel(parallel: object) -> None:
    """Refuse an unknown ``parallel`` mode, or ``"fsdp"`` outside a process group.

    Raises:
        InputTypeError: ``parallel`` is not a string.
        ConfigError: ``parallel`` is not ``"ddp"`` (a full copy of the model per process) or
            ``"fsdp"`` (each process holds a shard); the message names a close match.
        TrainingConfigError: ``parallel`` is ``"fsdp"`` while no ``torch.distributed`` process
            group is joined.
    """
    check_choice("parallel", parallel, PARALLEL_MODES)
    if parallel == "fsdp" and not (dist.is_available() and dist.is_initialized()):
        raise TrainingConfigError(
            "parallel='fsdp' shards the model over the processes of a torch.distributed group, "
            "but none is joined (this is a single process); expected a run started by torchrun. "
            "Launch it with `torchrun --nproc_per_node N script.py` and call fit inside "
            "vitlib.training.distributed_session(), or drop parallel='fsdp' to train unsharded."
        )


def is_fsdp(model: nn.Module) -> bool:
    """Whether ``model`` is sharded by ``fully_shard`` (an ``FSDPModule``)."""
    if not dist.is_available():
        return False
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def mixed_precision_policy(amp_dtype: torch.dtype | None, device: torch.device) -> Any:
    """FSDP2's ``MixedPrecisionPolicy`` for ``amp_dtype``, or ``None`` for full precision.

    ``torch.bfloat16`` keeps bf16 copies of the parameters for compute (gathered in bf16: half the
    traffic) and reduces gradients in float32; the sharded parameters and the optimiser stay
    float32, and so do the model's outputs (`shard_model` asks the root for them). On a CUDA
    device without bfloat16 there is no policy (training stays in float32).
    """
    if amp_dtype is None:
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return None
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return MixedPrecisionPolicy(param_dtype=amp_dtype, reduce_dtype=torch.float32)


def autocast_dtype(
    parallel: str, amp_dtype: torch.dtype | None, device: torch.device
) -> torch.dtype | None:
    """The dtype `fit` autocasts to: ``amp_dtype``, except under FSDP with a mixed-precision
    policy, which casts the parameters itself (autocast would then run norms in float32 beside
    bf16 weights, which the CPU kernels refuse)."""
    if parallel == "fsdp" and mixed_precision_policy(amp_dtype, device) is not None:
        return None
    return amp_dtype


def shard_model(model: nn.Module, *, mixed_precision: Any = None) -> nn.Module:
    """Shard ``model`` in place with ``fully_shard``: each encoder block, then the root.

    A model already sharded (by this function or by its user) is returned as it is.

    Args:
        model: A [`vitlib.ViT`][vitlib.ViT], or any module holding
            [`TransformerEncoderBlock`][vitlib.blocks.TransformerEncoderBlock]s; on its training
            device, with the same weights on every rank.
        mixed_precision: A ``MixedPrecisionPolicy`` (see `mixed_precision_policy`) or ``None``.

    Returns:
        ``model`` itself, now an ``FSDPModule`` (still an instance of its class).

    Raises:
        TrainingConfigError: ``model`` holds no encoder block to shard.
    """
    if is_fsdp(model):
        return model
    from torch.distributed.fsdp import fully_shard

    options: dict[str, Any] = {} if mixed_precision is None else {"mp_policy": mixed_precision}
    for block in encoder_blocks(model):
        fully_shard(block, **options)
    if mixed_precision is not None:  # blocks pass bf16 on; the logits leave in float32
        options["mp_policy"] = dataclasses.replace(mixed_precision, output_dtype=torch.float32)
    fully_shard(model, **options)
    return model


def encoder_blocks(model: nn.Module) -> list[TransformerEncoderBlock]:
    """The encoder blocks `shard_model` makes FSDP units of (``[]`` for a model already sharded).

    Raises:
        TrainingConfigError: ``model`` holds no encoder block.
    """
    if is_fsdp(model):
        return []
    blocks = [module for module in model.modules() if isinstance(module, TransformerEncoderBlock)]
    if not blocks:
        raise TrainingConfigError(
            f"parallel='fsdp' shards a model per encoder block, but the {type(model).__name__} "
            "given holds no vitlib TransformerEncoderBlock; expected a vitlib.ViT (or a module "
            "built from its blocks). Shard it yourself with torch.distributed.fsdp.fully_shard "
            "before fit, or train it with parallel='ddp'."
        )
    return blocks


@contextmanager
def fsdp_gradient_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Within the block, reduce-scatter the gradients in backward only if ``enabled``.

    With ``enabled=False`` (an accumulation micro-batch that does not step) each rank keeps its
    unsharded gradients and adds to them; the micro-batch that steps reduces the total once.
    """
    if enabled:
        yield
        return
    from torch.distributed.fsdp import FSDPModule

    if not isinstance(model, FSDPModule):
        raise TypeError(
            f"fsdp_gradient_sync needs a model sharded by fully_shard, got a "
            f"{type(model).__name__}; shard it with shard_model first."
        )
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def _full_options() -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def full_model_state(model: nn.Module) -> dict[str, Tensor]:
    """The full (unsharded) weights of a sharded ``model`` on rank 0's CPU; ``{}`` on others.

    A collective: every rank must call it, in the same order as the other collectives.
    """
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(model, options=_full_options())
    return {name: value for name, value in state.items() if isinstance(value, Tensor)}


def load_model_state(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Load weights into ``model``, sharded or not: full tensors (every rank holding all of
    them), or the shards (DTensors) a sharded model's own ``state_dict()`` gave.

    Full tensors are cut into the model's shards on each rank; nothing is sent between ranks.
    """
    if not is_fsdp(model):
        model.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
    from torch.distributed.tensor import DTensor

    if any(isinstance(value, DTensor) for value in state.values()):
        model.load_state_dict(state)
        return
    full = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, dict(state.items()), options=full)  # its value type


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The full optimiser state of a sharded ``model``, keyed by parameter name, on rank 0's CPU.

    ``{}`` on the other ranks. A collective, like `full_model_state`. The result is
    independent of the number of processes, so `load_optimizer_state` can resume it on any.
    """
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return dict(get_optimizer_state_dict(model, optimizer, options=_full_options()))


def _parameter_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[list[str]]:
    """The name of each parameter of each of ``optimizer``'s groups, in its order."""
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    return [[names[id(p)] for p in group["params"]] for group in optimizer.param_groups]


def _keyed_by_name(
    model: nn.Module, optimizer: torch.optim.Optimizer, saved: dict[str, Any]
) -> dict[str, Any]:
    """A ``torch.optim`` state dict keyed by parameter index, re-keyed by parameter name.

    Index ``i`` is the ``i``-th parameter of ``optimizer.param_groups`` (which `build_optimizer`
    builds in the same order with or without sharding).
    """
    ordered = [name for group in _parameter_names(model, optimizer) for name in group]
    indices = [index for group in saved["param_groups"] for index in group["params"]]
    if len(indices) != len(ordered):
        raise ValueError(
            f"the saved optimiser state has {len(indices)} parameters, the model {len(ordered)}"
        )
    name_of = dict(zip(indices, ordered, strict=True))
    return {
        "state": {name_of[index]: value for index, value in saved["state"].items()},
        "param_groups": [
            {**group, "params": [name_of[index] for index in group["params"]]}
            for group in saved["param_groups"]
        ],
    }


def _keyed_by_index(
    model: nn.Module, optimizer: torch.optim.Optimizer, saved: dict[str, Any]
) -> dict[str, Any]:
    """A state dict keyed by parameter name (`full_optimizer_state`) as ``torch.optim`` keys it,
    by the parameter's index in ``optimizer``'s groups, for ``optimizer.load_state_dict``."""
    groups = _parameter_names(model, optimizer)
    if len(groups) != len(saved["param_groups"]):
        raise ValueError(
            f"the saved optimiser state has {len(saved['param_groups'])} parameter groups, "
            f"the optimiser {len(groups)}"
        )
    index_of: dict[str, int] = {}
    param_groups = []
    for names, group in zip(groups, saved["param_groups"], strict=True):
        if sorted(names) != sorted(group["params"]):
            raise ValueError("the saved optimiser state groups other parameters than this model")
        first = len(index_of)
        index_of.update({name: first + offset for offset, name in enumerate(names)})
        param_groups.append({**group, "params": [index_of[name] for name in names]})
    state = {index_of[name]: value for name, value in saved["state"].items()}
    return {"state": state, "param_groups": param_groups}


def load_optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, saved: dict[str, Any]
) -> None:
    """Load a saved optimiser state into ``optimizer``, sharded or not.

    ``saved`` is either ``optimizer.state_dict()`` of an unsharded run (keyed by parameter index)
    or `full_optimizer_state` of a sharded one (keyed by parameter name); either loads into
    either kind of run, with any number of processes.

    Raises:
        ValueError, KeyError, RuntimeError: ``saved`` does not fit ``optimizer``.
    """
    by_name = any(
        isinstance(index, str) for group in saved["param_groups"] for index in group["params"]
    )
    if not is_fsdp(model):
        optimizer.load_state_dict(_keyed_by_index(model, optimizer, saved) if by_name else saved)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    full = saved if by_name else _keyed_by_name(model, optimizer, saved)
    set_optimizer_state_dict(model, optimizer, full, options=StateDictOptions(full_state_dict=True))
