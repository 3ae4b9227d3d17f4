"""Reading weight files without unpickling, and writing them atomically.

- ``.safetensors``: :func:`safetensors.torch.load_file`;
- ``.npz``: :func:`numpy.load` with ``allow_pickle=False``;
- ``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt``: :func:`torch.load` with ``weights_only=True``, which
  refuses any pickled code (nothing in the file is executed).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from ..errors import CheckpointError

__all__ = ["read_json", "read_weights", "write_directory_atomically"]

TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SUPPORTED_SUFFIXES = (".safetensors", ".npz", *TORCH_SUFFIXES)
# Wrappers that training frameworks put around a state dict, outermost first.
_NESTED_KEYS = ("state_dict", "model", "model_state_dict", "module")


def read_weights(path: Path) -> dict[str, Tensor]:
    """Read a weights file into ``{name: tensor}`` on the CPU, never unpickling.

    Raises:
        CheckpointError: Unknown suffix, corrupt or truncated file, or a pickle that carries code.
    """
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return _read_safetensors(path)
    if suffix == ".npz":
        return _read_npz(path)
    if suffix in TORCH_SUFFIXES:
        return _read_torch(path)
    raise CheckpointError(
        f"cannot read {path}: unknown weights format {suffix or '(no suffix)'!r}; "
        f"expected one of {', '.join(SUPPORTED_SUFFIXES)} or a directory with config.json."
    )


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"cannot read {path} as safetensors ({error}); the file is corrupt or truncated, "
            f"download or save it again."
        ) from error


def _read_npz(path: Path) -> dict[str, Tensor]:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return {key: torch.from_numpy(np.array(arrays[key])) for key in arrays.files}
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise CheckpointError(
                f"refused to load {path}: it holds pickled Python objects, which could run code; "
                f"vitlib reads plain numeric arrays only (nothing was executed)."
            ) from error
        raise CheckpointError(f"cannot read {path} as .npz ({error}); is it corrupt?") from error
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise CheckpointError(
            f"cannot read {path} as .npz ({error}); the file is corrupt or truncated."
        ) from error


def _read_torch(path: Path) -> dict[str, Tensor]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"refused to load {path}: it contains pickled objects other than tensors (possibly "
            f"code); vitlib loads with torch.load(weights_only=True), so nothing was executed. "
            f"Re-save only the state dict: torch.save(model.state_dict(), path)."
        ) from error
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as error:
        raise CheckpointError(
            f"cannot read {path} with torch.load ({error}); the file is corrupt or truncated."
        ) from error
    return _unwrap_state_dict(loaded, path)


def _unwrap_state_dict(loaded: Any, path: Path) -> dict[str, Tensor]:
    for key in _NESTED_KEYS:
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
    if not isinstance(loaded, Mapping):
        raise CheckpointError(
            f"{path} holds a {type(loaded).__name__}, not a state dict; save "
            f"model.state_dict() instead of the model."
        )
    tensors = {str(key): value for key, value in loaded.items() if isinstance(value, Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} holds no tensors; expected a model state dict.")
    prefixes = ("module.", "model.", "_orig_mod.")
    for prefix in prefixes:  # DistributedDataParallel, Lightning, torch.compile wrappers
        if all(key.startswith(prefix) for key in tensors):
            tensors = {key.removeprefix(prefix): value for key, value in tensors.items()}
    return tensors


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object, with a :class:`CheckpointError` naming the file if it is broken."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"cannot read {path} as JSON ({error}).") from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(data).__name__}.")
    return data


def write_directory_atomically(
    directory: Path,
    tensors: Mapping[str, Tensor],
    config: Mapping[str, Any],
    *,
    overwrite: bool,
    weights_name: str = "model.safetensors",
) -> Path:
    """Write ``config.json`` and the safetensors weights into ``directory`` all at once.

    Files are written to a temporary sibling folder which then replaces ``directory``, so a crash
    never leaves a half-written checkpoint and an existing one is only replaced once the new one
    is complete.

    Raises:
        FileExistsError: ``directory`` exists and is not empty, and ``overwrite`` is False.
        NotADirectoryError: ``directory`` is a file.
    """
    directory = Path(directory)
    if directory.is_file():
        raise NotADirectoryError(f"{directory} is a file; save_pretrained needs a directory path.")
    if directory.exists() and any(directory.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{directory} already exists and is not empty; nothing was written. Choose a new "
            f"directory, or pass overwrite=True to replace it."
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        contiguous = {key: value.detach().cpu().contiguous() for key, value in tensors.items()}
        save_file(contiguous, str(staging / weights_name), metadata={"format": "pt"})
        (staging / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        if directory.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=directory.parent))
            os.replace(directory, backup / directory.name)
            os.replace(staging, directory)
            shutil.rmtree(backup)
        else:
            os.replace(staging, directory)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return directory
