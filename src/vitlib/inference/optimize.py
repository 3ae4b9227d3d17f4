"""One call to a fast CPU inference model: int8 or bf16 weights, optionally compiled.

[`optimize_for_inference`][vitlib.optimize_for_inference] returns a copy that is still a
[`ViT`][vitlib.ViT], computes only the class token in its last block, and takes float32 images:

- ``"int8"``: the ``nn.Linear`` layers (97% of the FLOPs) dynamically quantised, by PyTorch
  (oneDNN where the CPU has AMX-INT8) or, with ``compile=True``, by torchao;
- ``"bf16"``: weights and activations in bfloat16, fast only on CPUs with bf16 units;
- ``"fp32"``: the model as it is (eval mode, no gradients), a baseline or a compile target.

The int8 copy cannot be saved as a checkpoint or exported to ONNX (its packed int8 layers have
no float weights to write); [`is_quantized`][vitlib.inference.is_quantized] tells it
apart, so that those functions can say so. docs/deployment.md says more, and docs/benchmarks.md
has the figures behind these choices.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Final, Literal

import torch
from torch import Tensor, nn

from vitlib._checks import check_bool, check_choice, check_type
from vitlib._runtime import is_quantized
from vitlib.blocks import TransformerEncoderBlock
from vitlib.blocks.attention import QueryKeyValue
from vitlib.errors import ConfigError
from vitlib.vit import ViT

__all__ = [
    "InferenceViT",
    "Precision",
    "PrecisionWarning",
    "at_precision",
    "class_token_output",
    "cpu_has_bf16_units",
    "is_quantized",
    "optimize_for_inference",
]

Precision = Literal["fp32", "bf16", "int8"]
_PRECISIONS: Final[tuple[Precision, ...]] = ("fp32", "bf16", "int8")


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

    The copy is an [`InferenceViT`][vitlib.inference.optimize.InferenceViT]: its ``forward``
    computes only what eq. 4 reads of the last block (the class token's output), and it takes
    float32 images and returns float32 logits whatever its own precision.

    Args:
        model: A trained [`ViT`][vitlib.ViT] in float32.
        precision: ``"int8"`` (dynamic quantisation of the linear layers), ``"bf16"`` or
            ``"fp32"``; docs/deployment.md says what each does and where it is fast.
        compile: Also ``torch.compile`` the copy in place with weight freezing (a slow first
            call, fused kernels after it).

    Returns:
        A [`ViT`][vitlib.ViT] in eval mode without gradients.

    Raises:
        InputTypeError: ``model`` is not a ViT, or ``compile`` is not a bool.
        ConfigError: ``precision`` is not one of ``"fp32"``, ``"bf16"``, ``"int8"``, or the
            model is not float32 (or is already int8-quantised).
    """
    check_type("model", model, ViT, "a vitlib.ViT")
    check_choice("precision", precision, _PRECISIONS)
    check_bool("compile", compile)
    if is_quantized(model):
        raise ConfigError(
            "optimize_for_inference starts from a float32 model, got one that is already "
            "int8-quantised; pass the float32 model it was made from."
        )
    weight = model.patch_embedding.patcher.weight
    if weight.dtype != torch.float32:
        raise ConfigError(
            f"optimize_for_inference starts from a float32 model, got {weight.dtype}; "
            f"call model.float() first."
        )
    fast = copy.deepcopy(model).eval().requires_grad_(False)
    fast.__class__ = _inference_class(type(model))  # the same modules, InferenceViT's methods
    if precision == "bf16":
        _warn_if_emulated()
        fast.to(torch.bfloat16)
    elif precision == "int8":
        _quantize_linear_layers(fast, for_compile=compile)
    if compile:  # freezing: the weights are constants, folded into the compiled graph
        fast.compile(dynamic=False, options={"freezing": True})
    return fast


class InferenceViT(ViT):
    """What [`optimize_for_inference`][vitlib.optimize_for_inference] returns: a ``ViT`` whose
    ``forward`` computes only what it returns, in any precision.

    - **The class-token shortcut.** With class-token pooling, ``forward`` runs the last block's
      attention for the class token's query alone and its MLP for that token alone: the same
      logits, about ``1/L x 3/4`` fewer FLOPs (docs/architecture.md says more).
      ``forward_features`` and ``forward_intermediates`` still compute every token.
    - **Any precision, float32 at the edges.** Images are cast to the weights' dtype where they
      enter (``embed``, so every method takes float32 images) and ``forward`` returns logits in
      the images' dtype.
    """

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` in the images' dtype, the last block run for the class
        token only."""
        blocks = self.transformer_encoder
        last = blocks[-1] if len(blocks) else None
        if self.config.pool != "token" or not isinstance(last, TransformerEncoderBlock):
            logits = super().forward(images)
        else:
            tokens = self.embed(images)
            for output in self.block_outputs(tokens, last=len(blocks) - 2):
                tokens = output
            class_token = self.norm(class_token_output(last, tokens))[:, 0]
            logits = self.head(self.pre_logits(class_token))
        return logits.to(images.dtype) if images.is_floating_point() else logits

    def embed(self, images: Tensor) -> Tensor:
        """``ViT.embed`` of ``images`` cast to the weights' floating dtype."""
        dtype = self.position_embedding.dtype
        if isinstance(images, Tensor) and images.is_floating_point() and images.dtype != dtype:
            images = images.to(dtype)
        return super().embed(images)


def class_token_output(block: TransformerEncoderBlock, tokens: Tensor) -> Tensor:
    """``block(tokens)[:, :1]``, computed for the first token alone (in eval mode).

    Eq. 2 with every token as a key and a value but only the first as a query, then eq. 3 for
    that token; ``(B, N, D) -> (B, 1, D)``.
    """
    attention = block.msa_block
    query, key, value = attention.project(tokens)
    attended, _ = attention.attend(QueryKeyValue(query[:, :, :1], key, value))
    first = tokens[:, :1] + block.msa_scale(attended)  # eq. 2 (no drop path in eval mode)
    out: Tensor = first + block.mlp_scale(block.mlp_block(first))  # eq. 3
    return out


_INFERENCE_CLASSES: dict[type[ViT], type[ViT]] = {ViT: InferenceViT}


def _inference_class(model_class: type[ViT]) -> type[ViT]:
    """``InferenceViT``, or for a subclass of ``ViT`` a class of both (its own methods kept
    where ``InferenceViT`` does not replace them), made once per class."""
    if model_class not in _INFERENCE_CLASSES:
        name = f"Inference{model_class.__name__}"
        _INFERENCE_CLASSES[model_class] = type(name, (InferenceViT, model_class), {})
    return _INFERENCE_CLASSES[model_class]


def _warn_if_emulated() -> None:
    if not cpu_has_bf16_units():
        warnings.warn(
            "this CPU has no bfloat16 units (no AVX512-BF16 or AMX in /proc/cpuinfo): bfloat16 is "
            "emulated and slower than float32 here; use precision='int8' or 'fp32'.",
            PrecisionWarning,
            stacklevel=3,
        )


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
    """oneDNN where the CPU has AMX-INT8 (its kernels use AMX, fbgemm's do not), else torch's
    default engine."""
    if "onednn" in torch.backends.quantized.supported_engines and _cpu_flags() & {"amx_int8"}:
        return "onednn"
    return torch.backends.quantized.engine


def at_precision(model: ViT, precision: Precision | None, device: torch.device) -> ViT:
    """``model`` itself (``precision=None``), or its
    [`optimize_for_inference`][vitlib.optimize_for_inference] copy at ``precision``: the
    ``precision=`` of [`predict`][vitlib.predict] and [`evaluate_model`][vitlib.evaluate_model].

    Raises:
        ConfigError: ``precision`` is not ``None``, ``"fp32"``, ``"bf16"`` or ``"int8"``, or the
            model is to run on another device than the CPU (the copies are made for it).
    """
    if precision is None:
        return model
    check_choice("precision", precision, _PRECISIONS)
    if device.type != "cpu":
        raise ConfigError(
            f"precision={precision!r} makes a copy of the model tuned for the CPU, but it is to "
            f"run on {device}; leave precision out there (None: the model as it is), or run on "
            "the CPU."
        )
    return optimize_for_inference(model.to(device), precision)
