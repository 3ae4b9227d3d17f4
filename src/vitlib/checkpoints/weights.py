"""Reading weight files without unpickling, and writing a checkpoint's files.

- ``.safetensors``: ``safetensors.torch.load_file``;
- ``.npz``: ``numpy.load`` with ``allow_pickle=False``;
- ``.pth`` / ``.pt`` / ``.bin`` / ``.ckpt``: ``torch.load`` with ``weights_only=True``, which
  refuses any pickled code (nothing in the file is executed).
"""

from __future__ import annotations

import errno
import pickle
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
from vitlib.files import check_regular_file, dump_json

__all__ = [
    "CONFIG_FILE",
    "SUPPORTED_SUFFIXES",
    "WEIGHTS_FILE",
    "load_torch_file",
    "read_weights",
    "write_checkpoint_files",
]

#: The file that describes a checkpoint folder, in every family that has one.
CONFIG_FILE: Final = "config.json"
#: The weights file vitlib writes.
WEIGHTS_FILE: Final = "model.safetensors"
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SUPPORTED_SUFFIXES = (".safetensors", ".npz", *TORCH_SUFFIXES)
# Wrappers that training frameworks put around a state dict, outermost first.
_NESTED_KEYS = ("state_dict", "model", "model_state_dict", "module")


def read_weights(path: Path) -> dict[str, Tensor]:
    """Read a weights file into ``{name: tensor}`` on the CPU, never unpickling.

    Raises:
        CheckpointError: Unknown suffix, not a regular file, corrupt or truncated file, or a
            pickle that carries code.
        PermissionError: The file may not be read.
    """
    check_regular_file(path)
    try:  # the readers below report a file they may not open as missing or corrupt
        with path.open("rb"):
            pass
    except PermissionError as error:
        raise PermissionError(
            errno.EACCES,
            f"permission denied reading {path}; make it readable (chmod u+r) or load it as "
            "the user who owns it",
            str(path),
        ) from error
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


def load_torch_file(path: Path, *, fix: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU: plain data and tensors only, nothing
    in the file is run. The one weights-only load of vitlib (weights files and a run's training
    state).

    Args:
        path: A regular file written by ``torch.save``.
        fix: What the user can do instead, ending each message.

    Raises:
        CheckpointError: The file is empty, corrupt or truncated, or holds other objects
            (refused: possibly code); the message names it.
    """
    if check_regular_file(path) == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): a save was cut short; {fix}.")
    with path.open("rb") as file:  # errors opening it (permissions) are not about its bytes
        try:
            return torch.load(file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            # torch's text advises weights_only=False, i.e. running the file's code: never shown
            raise CheckpointError(
                f"{path} was refused: it holds pickled objects other than tensors, numbers, "
                f"strings, lists and dicts (possibly code); vitlib loads with "
                f"torch.load(weights_only=True), so nothing was executed; {fix}."
            ) from None
        except MemoryError:
            raise
        except Exception as error:  # torch raises RuntimeError, EOFError, OSError... on bad bytes
            reason = str(error).split(". ")[0].strip() or type(error).__name__
            raise CheckpointError(f"{path} is corrupt or truncated ({reason}); {fix}.") from error


def _read_torch(path: Path) -> dict[str, Tensor]:
    fix = "re-save only the state dict: torch.save(model.state_dict(), path)"
    return _unwrap_state_dict(load_torch_file(path, fix=fix), path)


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


def write_checkpoint_files(
    folder: Path, tensors: Mapping[str, Tensor], json_files: Mapping[str, Mapping[str, Any]]
) -> None:
    """Write the safetensors weights and the JSON files (``config.json``...) into ``folder``
    (not atomically: callers write into a staging folder of
    [`write_files`][vitlib.files.write_files])."""
    contiguous = {key: value.detach().cpu().contiguous() for key, value in tensors.items()}
    save_file(contiguous, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})
    for name, content in json_files.items():
        dump_json(dict(content), folder / name)
