"""Export a ViT for deployment: ONNX through PyTorch's ``torch.export``-based exporter.

The exported graph takes ``images`` ``(batch, C, H, W)`` with a dynamic batch size and returns
``logits`` (or pooled features for ``num_classes=0``); it equals the eager model to about 1e-6 in
float32 under onnxruntime (tested to 1e-4). Needs the ``onnx`` extra
(``pip install "vitlib[onnx]"``: onnx and onnxscript; onnxruntime to run the file).
"""

from __future__ import annotations

import errno
import importlib.util
import os
from pathlib import Path
from typing import Final

import torch

from vitlib._checks import check_bool, check_type
from vitlib._optional import missing_extra
from vitlib._runtime import eval_mode
from vitlib.errors import ConfigError
from vitlib.files import write_files
from vitlib.vit import ViT

__all__ = ["ONNX_OPSET", "export_onnx"]

#: The ONNX opset written by default (onnxruntime 1.18 and later run it).
ONNX_OPSET: Final = 18
# Protobuf cannot hold more than 2 GiB: larger models keep their weights in ``<name>.data``.
_PROTOBUF_LIMIT: Final = 2**31 - 2**26


def export_onnx(
    model: ViT,
    path: str | os.PathLike[str],
    *,
    opset: int = ONNX_OPSET,
    max_batch: int = 4096,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as an ONNX file with a dynamic batch dimension.

    The input is named ``images`` and the output ``logits``, at the model's ``img_size``; traced
    in eval mode (the model's mode is restored). Models over 2 GiB keep their weights in
    ``<path>.data`` beside the file, which appears only once complete.

    Args:
        model: The model to export.
        path: The ``.onnx`` file to write.
        opset: The ONNX opset version.
        max_batch: The largest batch size the graph accepts.
        overwrite: Replace an existing file (otherwise it is refused and nothing is written).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        TypeError: ``model`` is not a [`ViT`][vitlib.ViT].
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ImportError: onnx or onnxscript is missing (``pip install "vitlib[onnx]"``).
    """
    check_type("model", model, ViT, "a vitlib.ViT (for another module call torch.onnx.export)")
    check_bool("overwrite", overwrite)
    target = Path(path)
    if target.suffix.lower() != ".onnx":
        raise ConfigError(
            f"export_onnx writes a .onnx file, got {target}; name it e.g. model.onnx."
        )
    if target.exists() and not overwrite:
        raise FileExistsError(
            errno.EEXIST,
            f"{target} already exists; nothing was written. Pass overwrite=True to replace it",
            str(target),
        )
    if any(importlib.util.find_spec(name) is None for name in ("onnx", "onnxscript")):
        raise missing_extra("onnx and onnxscript", "onnx", "export_onnx")
    write_files(
        target.parent,
        lambda staging: _export(model, staging / target.name, opset=opset, max_batch=max_batch),
        overwrite=overwrite,
        what="export_onnx",
        exclusive=False,
    )
    return target


def _export(model: ViT, path: Path, *, opset: int, max_batch: int) -> None:
    """Export into ``path`` (in a staging folder)."""
    config = model.config
    weight = model.patch_embedding.patcher.weight
    example = torch.zeros(2, config.in_channels, *config.image_hw, dtype=weight.dtype)
    batch = torch.export.Dim("batch", min=1, max=max_batch)
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    with eval_mode(model):
        torch.onnx.export(
            model,
            (example.to(weight.device),),
            str(path),
            dynamo=True,
            dynamic_shapes={"images": {0: batch}},
            input_names=["images"],
            output_names=["logits"],
            opset_version=opset,
            external_data=size > _PROTOBUF_LIMIT,
            verbose=False,
        )
