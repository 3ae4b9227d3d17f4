"""Export a ViT for deployment: ONNX through PyTorch's ``torch.export``-based exporter.

The exported graph takes ``images`` ``(batch, C, H, W)`` with a dynamic batch size and returns
``logits`` (or pooled features for ``num_classes=0``); it equals the eager model to about 1e-6 in
float32 under onnxruntime (tested to 1e-4). Float32 and float16 models are exported; an int8 or
bfloat16 copy from ``optimize_for_inference`` is refused with what to do instead. Needs the
``onnx`` extra (``pip install "vitlib[onnx]"``: onnx and onnxscript; onnxruntime to run the file).
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import itertools
import os
from pathlib import Path
from typing import Final

import torch

from vitlib._checks import check_bool, check_int, check_type
from vitlib._optional import missing_extra
from vitlib._runtime import eval_mode
from vitlib.errors import ConfigError
from vitlib.files import write_files
from vitlib.inference.optimize import is_quantized
from vitlib.vit import ViT

__all__ = ["MIN_ONNX_OPSET", "ONNX_OPSET", "check_onnx_target", "export_onnx", "onnx_opsets"]

#: The ONNX opset written by default (onnxruntime 1.18 and later run it).
ONNX_OPSET: Final = 18
#: The oldest opset written: torch's exporter builds opset 18 and converts it up with onnxscript;
#: older ones go through onnx's C converter, which fails on some ViTs (mean pooling at 17).
MIN_ONNX_OPSET: Final = 18
# The dtypes of the graphs ``export_onnx`` writes; onnxruntime runs both.
_EXPORT_DTYPES: Final = (torch.float32, torch.float16)
# Protobuf cannot hold more than 2 GiB: larger models keep their weights in ``<name>.data``.
_PROTOBUF_LIMIT: Final = 2**31 - 2**26
# ONNX dimensions are int64.
_MAX_BATCH: Final = 2**63 - 1
_FLOAT32_ADVICE: Final = (
    "Export the float32 model instead (the one given to optimize_for_inference, or "
    "model.float()); to make the ONNX file smaller or faster, quantise it afterwards with "
    "onnxruntime.quantization.quantize_dynamic"
)
# Why a graph of each refused dtype would be useless.
_DTYPE_PROBLEMS: Final = {
    torch.bfloat16: "ONNX's Conv has no bfloat16 type, so no runtime would load the graph",
    torch.float64: "onnxruntime has no float64 Conv kernel, so it could not run the graph",
}


def export_onnx(
    model: ViT,
    path: str | os.PathLike[str],
    *,
    opset: int = ONNX_OPSET,
    max_batch: int = 4096,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as an ONNX file with a dynamic batch dimension.

    The input is named ``images`` and the output ``logits``, at the model's ``img_size`` and in
    its dtype (float32, or float16 for a ``model.half()``); traced in eval mode (the model's
    mode is restored). Models over 2 GiB keep their weights in ``<path>.data`` beside the file,
    which appears only once complete. The file's opset is checked to be ``opset``.

    Other models are refused before any work, with what to do instead, because the file would
    not run: a bfloat16 model (such as ``optimize_for_inference(model, "bf16")``: ONNX's Conv
    has no bfloat16 type) or a float64 one (onnxruntime has no float64 Conv), and an
    int8-quantised one (``optimize_for_inference(model, "int8")``: its packed layers have no
    ONNX form). A float32 graph of a bfloat16 model was not chosen: it would be neither the
    model asked for nor faster. As with Hugging Face's optimum, export the float32 model and
    change its precision afterwards, with onnxruntime's quantisation.

    Args:
        model: The model to export, float32 or float16.
        path: The ``.onnx`` file to write.
        opset: The ONNX opset version, from ``MIN_ONNX_OPSET`` (18) to the newest the installed
            exporter writes ([`onnx_opsets`][vitlib.inference.export.onnx_opsets]).
        max_batch: The largest batch size ``torch.export`` traces the graph for; onnxruntime
            does not enforce it. ``1`` writes a graph of batch size 1 (not dynamic).
        overwrite: Replace an existing file (otherwise it is refused and nothing is written).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        InputTypeError: ``model`` is not a [`ViT`][vitlib.ViT], or an argument has the wrong
            type.
        ConfigError: ``path`` does not end in ``.onnx``; ``opset`` or ``max_batch`` is out of
            range; ``model`` is int8-quantised, on the ``meta`` device, or neither float32 nor
            float16; or the exporter wrote another opset than ``opset`` (nothing is written).
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        IsADirectoryError: ``path`` is a folder.
        OSError: The file cannot be written (a read-only folder, a full disk): the message
            names the folder of ``path`` (not a staging folder), which is left as it was.
        ImportError: onnx or onnxscript is missing (``pip install "vitlib[onnx]"``).
    """
    check_type("model", model, ViT, "a vitlib.ViT (for another module call torch.onnx.export)")
    check_int("max_batch", max_batch, minimum=1, maximum=_MAX_BATCH)
    dtype = _export_dtype(model)
    target = check_onnx_target(path, overwrite=overwrite)
    opsets = onnx_opsets()
    check_int(
        "opset",
        opset,
        minimum=opsets.start,
        maximum=opsets.stop - 1,
        fix=f"torch's exporter writes opset {MIN_ONNX_OPSET} and converts it up to "
        f"{opsets.stop - 1} with the installed onnx and onnxscript; the default "
        f"{ONNX_OPSET} runs on onnxruntime 1.18 and later",
    )
    write_files(
        target.parent,
        lambda staging: _export(
            model, staging / target.name, target, opset=opset, max_batch=max_batch, dtype=dtype
        ),
        overwrite=overwrite,
        what="export_onnx",
        exclusive=False,
    )
    return target


def check_onnx_target(path: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Check, before any work, that [`export_onnx`][vitlib.export_onnx] can write ``path``.

    ``vitlib convert ... --to onnx`` calls it before it loads the checkpoint.

    Args:
        path: The ``.onnx`` file to write.
        overwrite: Whether an existing file may be replaced.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        InputTypeError: ``path`` is not a string or path, or ``overwrite`` not a bool.
        ConfigError: ``path`` does not end in ``.onnx``.
        IsADirectoryError: ``path`` is a folder (never replaced).
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ImportError: onnx or onnxscript is missing (``pip install "vitlib[onnx]"``).
    """
    check_type("path", path, (str, os.PathLike), "a str or os.PathLike path to a .onnx file")
    check_bool("overwrite", overwrite)
    target = Path(path)
    if target.suffix.lower() != ".onnx":
        raise ConfigError(
            f"export_onnx writes a .onnx file, got {target}; name it e.g. model.onnx."
        )
    if target.is_dir():
        raise IsADirectoryError(
            errno.EISDIR,
            f"{target} is a folder; export_onnx writes a file and never replaces a folder. Give "
            f"a file path such as {target / 'model.onnx'}",
            str(target),
        )
    if target.exists() and not overwrite:
        raise FileExistsError(
            errno.EEXIST,
            f"{target} already exists; nothing was written. Pass overwrite=True to replace it",
            str(target),
        )
    if any(importlib.util.find_spec(name) is None for name in ("onnx", "onnxscript")):
        raise missing_extra("onnx and onnxscript", "onnx", "export_onnx")
    return target


def onnx_opsets() -> range:
    """The opsets [`export_onnx`][vitlib.export_onnx] can write with the installed packages.

    From ``MIN_ONNX_OPSET`` (18, which torch's exporter builds) to the newest opset both the
    onnx package and onnxscript's version converter (which torch uses for the others) know.

    Raises:
        ImportError: onnx is missing (``pip install "vitlib[onnx]"``).
    """
    try:
        import onnx
    except ImportError as error:
        raise missing_extra("onnx", "onnx", "export_onnx") from error
    newest: int = onnx.defs.onnx_opset_version()
    try:  # onnxscript states its converter's range only in this module
        converter = importlib.import_module("onnxscript.version_converter._version_converter")
    except ImportError:
        converter = None
    newest = min(newest, getattr(converter, "SUPPORTED_MAX_ONNX_OPSET", newest))
    return range(MIN_ONNX_OPSET, newest + 1)


def _export_dtype(model: ViT) -> torch.dtype:
    """The one floating dtype of ``model``'s weights, or an error saying why it is refused."""
    if is_quantized(model):
        raise ConfigError(
            "export_onnx cannot export an int8-quantised model (optimize_for_inference(model, "
            "'int8'), or torch.ao/torchao quantisation): its packed int8 layers have no ONNX "
            "form. Export the float32 model, then quantise the file with onnxruntime.quantization"
            ".quantize_dynamic, or quantise after loading with optimize_for_inference."
        )
    tensors = list(itertools.chain(model.parameters(), model.buffers()))
    if any(tensor.is_meta for tensor in tensors):
        raise ConfigError(
            "export_onnx got a model on the meta device, which has no weights to export; load "
            "or initialise its weights first (e.g. model.to_empty(device='cpu') and "
            "load_state_dict, or vitlib.load_pretrained)."
        )
    dtypes = sorted({t.dtype for t in tensors if t.is_floating_point() or t.is_complex()}, key=str)
    if len(dtypes) == 1 and dtypes[0] in _EXPORT_DTYPES:
        return dtypes[0]
    names = " and ".join(str(dtype).removeprefix("torch.") for dtype in dtypes)
    if len(dtypes) == 1:
        problem = _DTYPE_PROBLEMS.get(dtypes[0], "onnxruntime could not run the graph")
    else:
        problem = "an ONNX graph needs one dtype throughout"
    raise ConfigError(
        f"export_onnx writes float32 (or float16) graphs, got a model with {names} weights: "
        f"{problem}. {_FLOAT32_ADVICE}."
    )


def _export(
    model: ViT, path: Path, target: Path, *, opset: int, max_batch: int, dtype: torch.dtype
) -> None:
    """Export into ``path``, in write_files's staging folder (errors name ``target``)."""
    config = model.config
    device = model.patch_embedding.patcher.weight.device
    # torch.export cannot make a dimension dynamic in a range of one value: batch 1 is fixed.
    example = torch.zeros(min(max_batch, 2), config.in_channels, *config.image_hw, dtype=dtype)
    dynamic = (
        {"images": {0: torch.export.Dim("batch", min=1, max=max_batch)}} if max_batch > 1 else None
    )
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    with eval_mode(model):  # write_files names the folder, not this path, if writing fails
        torch.onnx.export(
            model,
            (example.to(device),),
            str(path),
            dynamo=True,
            dynamic_shapes=dynamic,
            input_names=["images"],
            output_names=["logits"],
            opset_version=opset,
            external_data=size > _PROTOBUF_LIMIT,
            verbose=False,
        )
    _check_opset_written(path, target, opset)


def _check_opset_written(path: Path, target: Path, opset: int) -> None:
    """Refuse a file whose opset is not ``opset`` (torch falls back to its own when it cannot
    convert the graph, with a log message only)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    written = {entry.domain: entry.version for entry in model.opset_import}
    version = written.get("", written.get("ai.onnx"))
    if version != opset:
        raise ConfigError(
            f"export_onnx was asked for opset {opset}, but torch {torch.__version__} wrote "
            f"opset {version} (it could not convert this model's graph); {target} was not "
            f"written. Use opset {ONNX_OPSET} (the default), or update onnxscript."
        )
