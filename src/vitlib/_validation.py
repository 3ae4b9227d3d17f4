"""Checks shared by the config and the blocks; each raises with the value given and the fix."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Final

import torch

from .errors import ConfigError, InputTypeError

__all__ = [
    "MAX_LAYER_NORM_EPS",
    "MAX_LAYER_SCALE_INIT",
    "check_bool",
    "check_divisible",
    "check_fits_in_memory",
    "check_input_tensor",
    "check_layer_norm_eps",
    "check_layer_scale_init",
    "check_positive_float",
    "check_positive_int",
    "check_rate",
    "device_memory_bytes",
    "to_pair",
]

#: Largest accepted ``layer_norm_eps``: beyond it the epsilon swamps the variance of the
#: activations and every token normalises to (almost) zero.
MAX_LAYER_NORM_EPS: Final = 0.1
#: Largest accepted ``layer_scale_init``; published values are 1e-6 to 1.
MAX_LAYER_SCALE_INIT: Final = 10.0


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an ``int`` >= 1 (``bool`` excluded), else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {value!r} ({type(value).__name__}).")
    if value < 1:
        raise ConfigError(f"{name} must be >= 1, got {value}.")
    return value


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a ``bool``, else raise (``"false"`` and ``0`` are not bools)."""
    if not isinstance(value, bool):
        raise TypeError(
            f"{name} must be a bool (True or False), got {value!r} ({type(value).__name__}); "
            f"a string such as 'false' would count as true."
        )
    return value


def _check_real(name: str, value: object, expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__}).")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be {expected}, got {value}.")
    return float(value)


def check_rate(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a probability in [0, 1), else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name} must be a float in [0, 1), got {value!r} ({type(value).__name__})."
        )
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got {value}; use 0.0 to disable it.")
    return float(value)


def check_layer_norm_eps(value: object) -> float:
    """Return ``layer_norm_eps`` as a float if it is finite and in ``(0, MAX_LAYER_NORM_EPS]``."""
    expected = f"a float in (0, {MAX_LAYER_NORM_EPS}]"
    eps = _check_real("layer_norm_eps", value, expected)
    if not 0.0 < eps <= MAX_LAYER_NORM_EPS:
        raise ConfigError(
            f"layer_norm_eps must be > 0, and at most {MAX_LAYER_NORM_EPS} (larger values "
            f"normalise every token to about zero), got {value!r}; common values are 1e-6 "
            f"(the reference code), 1e-5 (PyTorch) and 1e-12 (Hugging Face)."
        )
    return eps


def check_layer_scale_init(value: object) -> float | None:
    """Return ``layer_scale_init`` if None (off) or finite in ``(0, MAX_LAYER_SCALE_INIT]``."""
    if value is None:
        return None
    expected = f"None (off) or a float in (0, {MAX_LAYER_SCALE_INIT}]"
    scale = _check_real("layer_scale_init", value, expected)
    if not 0.0 < scale <= MAX_LAYER_SCALE_INIT:
        raise ConfigError(
            f"layer_scale_init must be > 0 or None (off), and at most {MAX_LAYER_SCALE_INIT}, "
            f"got {value!r}; CaiT uses 1e-5 to 0.1."
        )
    return scale


def to_pair(name: str, value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Return ``(height, width)`` from an int or a 2-sequence of positive ints, else raise."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ConfigError(
                f"{name} must be an int or a (height, width) pair, got {value!r} "
                f"with {len(value)} entries."
            )
        return check_positive_int(f"{name}[0]", value[0]), check_positive_int(
            f"{name}[1]", value[1]
        )
    size = check_positive_int(name, value)
    return size, size


def check_divisible(
    name: str, value: tuple[int, int], divisor_name: str, divisor: tuple[int, int]
) -> None:
    """Raise unless each side of ``value`` is a multiple of the matching side of ``divisor``."""
    if value[0] % divisor[0] or value[1] % divisor[1]:
        raise ConfigError(
            f"{name} {value[0]}x{value[1]} is not divisible by {divisor_name} "
            f"{divisor[0]}x{divisor[1]}; use a {name} that is a multiple of the {divisor_name} "
            f"(e.g. {value[0] // divisor[0] * divisor[0] or divisor[0]}x"
            f"{value[1] // divisor[1] * divisor[1] or divisor[1]})."
        )


def device_memory_bytes(device: torch.device) -> int | None:
    """Total memory of ``device`` in bytes: RAM for the CPU, the card's for CUDA, else None."""
    if device.type == "cpu":
        try:
            return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):  # not a POSIX system
            return None
    if device.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(device).total_memory)
    return None


def check_fits_in_memory(what: str, parts: Mapping[str, int], *, fix: str) -> None:
    """Refuse to allocate ``sum(parts)`` parameters that exceed the default device's memory.

    Building a model far larger than the machine would either fail deep inside torch's allocator
    or, for many small tensors, swap for minutes; this fails at once instead. Nothing is checked
    on the ``meta`` device, where nothing is allocated.

    Args:
        what: The thing being built, e.g. ``"ViT(embedding_dim=1000000000, ...)"``.
        parts: Parameter counts by the config field(s) that drive them; the largest is named.
        fix: What to do instead.

    Raises:
        ConfigError: The parameters alone need more bytes than the device has.
    """
    device = torch.get_default_device()
    if device.type == "meta":
        return
    available = device_memory_bytes(device)
    numel = sum(parts.values())
    needed = numel * torch.get_default_dtype().itemsize
    if available is None or needed <= available:
        return
    largest = max(parts, key=lambda part: parts[part])
    raise ConfigError(
        f"{what} has {numel:,} parameters, {_gigabytes(needed)} in "
        f"{str(torch.get_default_dtype()).removeprefix('torch.')}, more than the "
        f"{_gigabytes(available)} of memory of this {device.type} device; most of them come from "
        f"{largest} ({parts[largest]:,}). {fix}"
    )


def _gigabytes(size: int) -> str:
    return f"{size / 2**30:,.1f} GiB"


def check_input_tensor(name: str, value: object, like: torch.Tensor) -> torch.Tensor:
    """Return ``value`` if it is a tensor that can meet the weight ``like``, else raise.

    It must be a ``torch.Tensor`` on ``like``'s device and of ``like``'s floating dtype; under
    ``torch.autocast`` any floating dtype is accepted, since autocast casts it.

    Raises:
        InputTypeError: Not a tensor, another device, an integer or bool tensor, or another
            floating dtype outside autocast.
    """
    if not isinstance(value, torch.Tensor):
        kind = type(value).__name__
        convert = "torch.from_numpy(array)" if kind == "ndarray" else "torch.as_tensor(value)"
        raise InputTypeError(
            f"{name} must be a torch.Tensor, got {kind}; convert it with {convert} "
            f"(then .float() for pixel data)."
        )
    if value.dtype == like.dtype and value.device == like.device and value.is_floating_point():
        return value  # the usual case, checked before any message is built (every block runs it)
    expected = str(like.dtype).removeprefix("torch.")
    given = str(value.dtype).removeprefix("torch.")
    if value.device != like.device:
        raise InputTypeError(
            f"{name} are on {value.device}, the model's weights on {like.device}; move them "
            f"with {name}.to({str(like.device)!r}) (or the model with model.to(...))."
        )
    if not value.is_floating_point():
        raise InputTypeError(
            f"{name} have dtype {given}; the model expects floating-point {name} like its "
            f"{expected} weights. Convert with {name}.float() (pixel values in 0..255 also need "
            f"/ 255 and the normalisation used in training)."
        )
    if value.dtype != like.dtype and not torch.is_autocast_enabled(value.device.type):
        low = {torch.float16, torch.bfloat16}
        autocast = ""
        if torch.float32 in (value.dtype, like.dtype) and {value.dtype, like.dtype} & low:
            low_name = given if value.dtype in low else expected
            autocast = (
                f", or keep float32 {name} and weights and run under torch.autocast("
                f"{value.device.type!r}, dtype=torch.{low_name})"
            )
        raise InputTypeError(
            f"{name} have dtype {given} but the model's weights are {expected}; cast with "
            f"{name}.to(torch.{expected}) or convert the model with model.to(torch.{given})"
            f"{autocast}."
        )
    return value


def check_positive_float(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite real number > 0 (``bool`` excluded)."""
    number = _check_real(name, value, "a finite number > 0")
    if number <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}.")
    return number
