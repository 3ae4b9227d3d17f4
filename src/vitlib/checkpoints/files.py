"""Reading weight files without unpickling, and writing them atomically.

- ``.safetensors``: ``safetensors.torch.load_file``;
- ``.npz``: ``numpy.load`` with ``allow_pickle=False``;
- ``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt``: ``torch.load`` with ``weights_only=True``, which
  refuses any pickled code (nothing in the file is executed).
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from vitlib.errors import CheckpointError

__all__ = [
    "CONFIG_FILE",
    "MAX_JSON_BYTES",
    "WEIGHTS_FILE",
    "check_regular_file",
    "read_json",
    "read_weights",
    "write_checkpoint_files",
]

CONFIG_FILE: Final = "config.json"
WEIGHTS_FILE: Final = "model.safetensors"
#: Largest ``config.json`` read (Hugging Face configs with 21k labels are about 1 MiB).
MAX_JSON_BYTES: Final = 16 * 2**20
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SUPPORTED_SUFFIXES = (".safetensors", ".npz", *TORCH_SUFFIXES)
# Wrappers that training frameworks put around a state dict, outermost first.
_NESTED_KEYS = ("state_dict", "model", "model_state_dict", "module")


def read_weights(path: Path) -> dict[str, Tensor]:
    """Read a weights file into ``{name: tensor}`` on the CPU, never unpickling.

    Raises:
        CheckpointError: Unknown suffix, not a regular file, corrupt or truncated file, or a
            pickle that carries code.
    """
    check_regular_file(path)
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


def check_regular_file(path: Path) -> int:
    """Return the size of ``path`` if it is a regular file (after symbolic links), else raise.

    FIFOs, devices (``/dev/zero``) and sockets are refused before they are opened, since reading
    them could block forever or never end.

    Raises:
        FileNotFoundError: Nothing is at ``path`` (or a symbolic link there is dangling).
        CheckpointError: ``path`` is a folder, FIFO, device or socket.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError as error:
        raise FileNotFoundError(
            errno.ENOENT, f"no checkpoint file at {path}; check the path", str(path)
        ) from error
    except OSError as error:  # a symbolic-link loop, a path through a file...
        raise CheckpointError(f"cannot open {path} ({error.strerror}); check the path.") from error
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        if stat.S_ISFIFO(info.st_mode):
            kind = "a FIFO (named pipe)"
        elif stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
            kind = "a device"
        raise CheckpointError(
            f"{path} is {kind}; vitlib reads checkpoints from regular files only. Point it at "
            f"the checkpoint file itself."
        )
    return info.st_size


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object of at most ``MAX_JSON_BYTES`` from a regular file.

    Raises:
        CheckpointError: The file is not regular, too large, not UTF-8, not JSON (or nested too
            deeply), or not an object; the message names the file.
    """
    size = check_regular_file(path)
    if size > MAX_JSON_BYTES:
        raise CheckpointError(
            f"{path} is {size:,} bytes, more than the {MAX_JSON_BYTES:,} bytes a config.json may "
            f"have; it is not a model config."
        )
    try:
        with open(path, "rb") as file:
            text = file.read(MAX_JSON_BYTES + 1).decode("utf-8")
        data = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"cannot read {path} as JSON ({error}).") from error
    except RecursionError as error:
        raise CheckpointError(
            f"cannot read {path} as JSON: it is nested too deeply to be a model config."
        ) from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(data).__name__}.")
    return data


def write_checkpoint_files(
    folder: Path,
    tensors: Mapping[str, Tensor],
    config: Mapping[str, Any],
    *,
    weights_name: str = WEIGHTS_FILE,
) -> None:
    """Write ``config.json`` and the safetensors weights into ``folder`` (not atomically: callers
    write into a staging folder of
    [`write_files_atomically`][vitlib.checkpoints.atomic.write_files_atomically])."""
    contiguous = {key: value.detach().cpu().contiguous() for key, value in tensors.items()}
    save_file(contiguous, str(folder / weights_name), metadata={"format": "pt"})
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
