"""One call to a fast CPU inference model: int8 or bf16 weights, optionally compiled.

[`optimize_for_inference`][vitlib.inference.optimize_for_inference] returns a copy of the model
that is still a [`ViT`][vitlib.ViT] (``config``, ``forward``, ``forward_features``) and still
takes float32 images and returns float32 logits:

- ``"int8"``: the ``nn.Linear`` layers (97% of the FLOPs) dynamically quantised: int8 weights
  with one scale per tensor, activations quantised per batch, int8 GEMMs (VNNI/AMX). Eager,
  PyTorch's own dynamic quantisation is used, with the oneDNN engine where the CPU has AMX-INT8
  (fbgemm, the default, has no AMX kernels): torchao's
  ``Int8DynamicActivationInt8WeightConfig`` is the maintained successor, but in eager mode on
  CPU it ran slower than float32 here (ViT-B/16, batch 8: 0.7 vs 1.4 img/s on a loaded 2-core
  AMX machine) because its quantise/dequantise steps are separate kernels; with
  ``compile=True`` inductor fuses them, so torchao is used then.
- ``"bf16"``: weights and activations in bfloat16, which is fast only on CPUs with bf16 units
  (AVX512-BF16 or AMX); elsewhere it is emulated and slower, and a warning says so.
- ``"fp32"``: the model as it is (eval mode, no gradients), a baseline or a compile target.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any, Final, Literal

import torch
from torch import Tensor, nn

from vitlib.vit import ViT

__all__ = ["Precision", "PrecisionWarning", "cpu_has_bf16_units", "optimize_for_inference"]

Precision = Literal["fp32", "bf16", "int8"]
_PRECISIONS: Final = ("fp32", "bf16", "int8")


class PrecisionWarning(UserWarning):
    """The precision asked for is emulated on this machine and will be slower than float32."""


def cpu_has_bf16_units() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX-BF16; Linux only)."""
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def _cpu_flags() -> set[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            text = cpuinfo.read()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split()}


def optimize_for_inference(
    model: ViT, precision: Precision = "int8", *, compile: bool = False
) -> ViT:
    """A copy of ``model`` made fast for CPU inference; ``model`` itself is not changed.

    Args:
        model: A trained [`ViT`][vitlib.ViT] in float32.
        precision: ``"int8"`` (dynamic quantisation of the linear layers), ``"bf16"`` or
            ``"fp32"``; see the module docstring for what each does and where it is fast.
        compile: Also ``torch.compile`` the copy in place (``ViT.compile``) with weight freezing;
            the first call then takes a while, later calls run fused kernels.

    Returns:
        A [`ViT`][vitlib.ViT] in eval mode without gradients, taking and returning float32.

    Raises:
        TypeError: ``model`` is not a ViT.
        ValueError: ``precision`` is not one of ``"fp32"``, ``"bf16"``, ``"int8"``.
    """
    if not isinstance(model, ViT):
        raise TypeError(f"optimize_for_inference expects a vitlib.ViT, got {type(model).__name__}.")
    if precision not in _PRECISIONS:
        raise ValueError(
            f"precision must be one of {', '.join(map(repr, _PRECISIONS))}, got {precision!r}."
        )
    weight = model.patch_embedding.patcher.weight
    if weight.dtype != torch.float32:
        raise ValueError(
            f"optimize_for_inference starts from a float32 model, got {weight.dtype}; "
            f"call model.float() first."
        )
    fast = copy.deepcopy(model).eval().requires_grad_(False)
    if precision == "bf16":
        _to_bfloat16(fast)
    elif precision == "int8":
        _quantize_linear_layers(fast, for_compile=compile)
    if compile:  # freezing: the weights are constants, folded into the compiled graph
        fast.compile(dynamic=False, options={"freezing": True})
    return fast


def _to_bfloat16(model: ViT) -> None:
    if not cpu_has_bf16_units():
        warnings.warn(
            "this CPU has no bfloat16 units (no AVX512-BF16 or AMX in /proc/cpuinfo): bfloat16 is "
            "emulated and slower than float32 here; use precision='int8' or 'fp32'.",
            PrecisionWarning,
            stacklevel=3,
        )
    model.to(torch.bfloat16)
    model.register_forward_pre_hook(_images_to_bfloat16)
    model.register_forward_hook(_outputs_to_float32)


def _images_to_bfloat16(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    images = args[0]
    if isinstance(images, Tensor) and images.is_floating_point():
        return (images.to(torch.bfloat16), *args[1:])
    return args


def _outputs_to_float32(module: nn.Module, args: tuple[Any, ...], output: Tensor) -> Tensor:
    return output.float()


def _quantize_linear_layers(model: ViT, *, for_compile: bool) -> None:
    if for_compile:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        quantize_(model, Int8DynamicActivationInt8WeightConfig())
        return
    quantize: Callable[..., object] = torch.ao.quantization.quantize_dynamic  # untyped in torch
    engine = torch.backends.quantized.engine
    try:
        # The weights are packed for the engine chosen here and keep it when run.
        torch.backends.quantized.engine = _int8_engine()
        with warnings.catch_warnings():  # torch.ao's eager quantisation is deprecated, see above
            warnings.simplefilter("ignore")
            quantize(model, {nn.Linear}, dtype=torch.qint8, inplace=True)
    finally:
        torch.backends.quantized.engine = engine


def _int8_engine() -> str:
    """oneDNN where the CPU has AMX-INT8 (its kernels use AMX, fbgemm's do not: ViT-B/16 at
    batch 8 ran 15.9 against 12.2 img/s here), else torch's default engine."""
    if "onednn" in torch.backends.quantized.supported_engines and _cpu_flags() & {"amx_int8"}:
        return "onednn"
    return torch.backends.quantized.engine
