"""Where and how a model runs: one rule for the device, one context for eval mode, and whether
its layers are int8-quantised."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from vitlib._checks import check_type
from vitlib.errors import ConfigError

__all__ = ["check_device", "eval_mode", "is_quantized", "resolve_device"]

#: Accelerators whose availability is checked before anything is moved there.
_ACCELERATORS = ("cuda", "mps", "xpu")


def resolve_device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    """``device`` as a ``torch.device``, defaulting to where the model's parameters live.

    Raises:
        InputTypeError: ``device`` is not a string, a ``torch.device`` or ``None``.
        ConfigError: ``device`` names no device type, or one this machine does not have (see
            `check_device`).
    """
    if device is not None:
        return check_device(device)
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def check_device(device: object, name: str = "device") -> torch.device:
    """Return ``device`` as a ``torch.device`` if this machine has it.

    ``"cuda"`` (or ``"cuda:N"``) needs a PyTorch built with CUDA and a visible GPU (the N-th);
    ``"mps"`` an Apple GPU with PyTorch's Metal backend; ``"xpu"`` an Intel GPU.

    Raises:
        InputTypeError: ``device`` is not a string or a ``torch.device``.
        ConfigError: ``device`` names no device type (``"gpu"``), or a device this machine does
            not have; the message names it and what to use instead.
    """
    check_type(name, device, (str, torch.device), "a device such as 'cpu' or 'cuda', or None")
    try:
        target = device if isinstance(device, torch.device) else torch.device(str(device))
    except RuntimeError:
        raise ConfigError(
            f"{name} must name a device such as 'cpu', 'cuda', 'cuda:1' or 'mps', got "
            f"{device!r}, which PyTorch does not know; give one of those."
        ) from None
    if target.type in _ACCELERATORS:
        _check_available(name, target)
    return target


def _check_available(name: str, device: torch.device) -> None:
    """Refuse an accelerator this machine lacks, saying why and what to use instead."""
    kind = device.type
    if kind == "mps":
        backend = torch.backends.mps
        built, count = backend.is_built(), int(backend.is_available())
        needs = "an Apple-silicon Mac with macOS 12.3 or later and PyTorch built with MPS"
    else:
        module = getattr(torch, kind)
        built = kind != "cuda" or torch.version.cuda is not None or torch.version.hip is not None
        count = int(module.device_count()) if module.is_available() else 0
        needs = {
            "cuda": "an NVIDIA (or AMD ROCm) GPU with its driver, and a PyTorch built for it "
            "(https://pytorch.org/get-started)",
            "xpu": "an Intel GPU with its driver, and a PyTorch built for XPU",
        }[kind]
    if count == 0:
        why = (
            f"this PyTorch ({torch.__version__}) was built without {kind.upper()} support"
            if not built
            else f"no {kind.upper()} device is available on this machine"
        )
        raise ConfigError(
            f"{name}={str(device)!r} needs {kind.upper()}, but {why}; {kind.upper()} needs "
            f"{needs}. Use {name}='cpu' (or leave it None: the model's own device)."
        )
    if device.index is not None and device.index >= count:
        raise ConfigError(
            f"{name}={str(device)!r} names {kind.upper()} device {device.index}, but this "
            f"machine has {count} ({', '.join(f'{kind}:{i}' for i in range(count))}); use one "
            f"of them."
        )


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode for the ``with`` block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def is_quantized(model: nn.Module) -> bool:
    """Whether ``model`` holds int8-quantised layers: the copy
    ``optimize_for_inference(model, "int8")`` returns (with or without ``compile``), or a model
    quantised with ``torch.ao.quantization`` or torchao by hand.

    Such a model computes, but its layers keep packed int8 weights that no checkpoint format or
    ONNX export can write; [`save_pretrained`][vitlib.save_pretrained] and
    [`export_onnx`][vitlib.export_onnx] refuse it with this test. Save or export the float32
    model, and quantise after loading.

    Args:
        model: Any module.

    Returns:
        True if its state dict holds a quantised tensor: a ``torch.qint8`` (or other quantised
        dtype) tensor, alone or packed by one of PyTorch's quantised layers, or one of torchao's
        quantised tensors. Float modules prepared for quantisation (``torch.ao.nn.quantizable``,
        observers, ``FloatFunctional``) hold none.

    Raises:
        InputTypeError: ``model`` is not a ``torch.nn.Module``.
    """
    check_type("model", model, nn.Module, "a torch.nn.Module")
    return any(_holds_quantized(value) for value in model.state_dict().values())


def _holds_quantized(value: object) -> bool:
    """Whether a state-dict entry is or packs (in a tuple) a quantised tensor."""
    if isinstance(value, Tensor):
        return value.is_quantized or type(value).__module__.split(".")[0] == "torchao"
    if isinstance(value, (tuple, list)):
        return any(_holds_quantized(item) for item in value)
    return False
