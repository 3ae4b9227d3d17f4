"""The one set of argument checks, used by every layer (config, blocks, data, training, commands).

Each check returns the value (normalised: ``float`` for numbers, ``(height, width)`` for pairs)
or raises with one wording everywhere: ``"{name} must be {expected}, got {value!r}"``. A value of
the wrong type raises [`InputTypeError`][vitlib.errors.InputTypeError] (a ``TypeError``), a value
out of range [`ConfigError`][vitlib.errors.ConfigError] (a ``ValueError``), so the same mistake
gets the same exception and message in ``predict``, ``evaluate_model``, the loaders and ``fit``.
"""

from __future__ import annotations

import difflib
import math
import os
import reprlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, TypeVar

import torch

from vitlib.errors import ConfigError, InputTypeError

__all__ = [
    "MAX_LAYER_NORM_EPS",
    "MAX_LAYER_SCALE_INIT",
    "check_bool",
    "check_choice",
    "check_divisible",
    "check_fits_in_memory",
    "check_heads",
    "check_input_tensor",
    "check_int",
    "check_layer_norm_eps",
    "check_layer_scale_init",
    "check_names",
    "check_non_negative_int",
    "check_number",
    "check_positive_float",
    "check_positive_int",
    "check_rate",
    "check_sequence",
    "check_type",
    "did_you_mean",
    "to_pair",
    "type_error",
]

#: Largest accepted ``layer_norm_eps``: beyond it the epsilon swamps the variance of the
#: activations and every token normalises to (almost) zero.
MAX_LAYER_NORM_EPS: Final = 0.1
#: Largest accepted ``layer_scale_init``; published values are 1e-6 to 1.
MAX_LAYER_SCALE_INIT: Final = 10.0

_Choice = TypeVar("_Choice", bound=str)


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 60


def type_error(name: str, value: object, expected: str) -> InputTypeError:
    """The error for ``value`` of the wrong type, for the caller to raise (when no check fits)."""
    shown = _SHORT.repr(value)
    return InputTypeError(f"{name} must be {expected}, got {shown} ({type(value).__name__}).")


def _refuse_value(name: str, value: object, expected: str, fix: str = "") -> ConfigError:
    shown = _SHORT.repr(value)
    return ConfigError(f"{name} must be {expected}, got {shown}{'; ' + fix if fix else ''}.")


def check_type(name: str, value: object, types: type | tuple[type, ...], expected: str) -> None:
    """Raise ``InputTypeError`` unless ``value`` is an instance of ``types`` (``expected`` says
    what it must be in words, e.g. ``"a vitlib.ViT"``)."""
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise type_error(name, value, expected)


def check_sequence(name: str, value: object, expected: str) -> Sequence[object]:
    """Return ``value`` if it is a sequence other than a string, else raise ``InputTypeError``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise type_error(name, value, expected)
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def check_int(
    name: str,
    value: object,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    fix: str = "",
) -> int:
    """Return ``value`` if it is an ``int`` (``bool`` excluded) within ``[minimum, maximum]``;
    ``fix``, what to do instead, ends the message of a value out of range."""
    bounds = [f">= {minimum}"] if minimum is not None else []
    bounds += [f"<= {maximum}"] if maximum is not None else []
    expected = "an int" + (" " + " and ".join(bounds) if bounds else "")
    if isinstance(value, bool) or not isinstance(value, int):
        raise type_error(name, value, expected)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise _refuse_value(name, value, expected, fix)
    return value


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an ``int`` >= 1 (a count or a size)."""
    return check_int(name, value, minimum=1)


def check_non_negative_int(name: str, value: object) -> int:
    """Return ``value`` if it is an ``int`` >= 0."""
    return check_int(name, value, minimum=0)


def check_number(
    name: str,
    value: object,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
    fix: str = "",
    expected: str | None = None,
) -> float:
    """Return ``value`` as a ``float`` if it is a finite real number in the interval given.

    Args:
        name: The argument's name, for the message.
        value: What was given.
        low: The lower bound (``-inf`` for none).
        high: The upper bound (``inf`` for none).
        low_open: Exclude ``low`` itself.
        high_open: Exclude ``high`` itself.
        fix: What to do instead, appended to the message.
        expected: What the value must be, in words, when the interval does not say it all.
    """
    if expected is not None:
        pass
    elif low == -math.inf and high == math.inf:
        expected = "a finite number"
    elif high == math.inf:
        expected = f"a finite number {'>' if low_open else '>='} {low:g}"
    elif low == -math.inf:
        expected = f"a finite number {'<' if high_open else '<='} {high:g}"
    else:
        opening, closing = "(" if low_open else "[", ")" if high_open else "]"
        expected = f"a number in {opening}{low:g}, {high:g}{closing}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise type_error(name, value, expected)
    number = float(value)
    above = number > low if low_open else number >= low
    below = number < high if high_open else number <= high
    if not (math.isfinite(number) and above and below):
        raise _refuse_value(name, value, expected, fix)
    return number


def check_positive_float(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a finite real number > 0."""
    return check_number(name, value, low=0.0, low_open=True)


def check_rate(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a probability in ``[0, 1)`` (a dropout rate)."""
    return check_number(name, value, low=0.0, high=1.0, high_open=True, fix="0.0 disables it")


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a ``bool`` (``"false"`` and ``0`` are not bools)."""
    if not isinstance(value, bool):
        raise InputTypeError(
            f"{name} must be a bool (True or False), got {value!r} ({type(value).__name__}); "
            f"a string such as 'false' would count as true."
        )
    return value


def check_choice(name: str, value: object, choices: Sequence[_Choice]) -> _Choice:
    """Return ``value`` if it is one of ``choices`` (strings), naming a close match if not."""
    expected = f"one of {', '.join(map(repr, choices))}"
    if not isinstance(value, str):
        raise type_error(name, value, expected)
    for choice in choices:
        if value == choice:
            return choice
    raise ConfigError(
        f"{name} must be {expected}, got {_SHORT.repr(value)}{did_you_mean(value, choices)}."
    )


def check_names(given: Iterable[str], valid: Sequence[str], where: str, kind: str) -> None:
    """Raise ``InputTypeError`` (as Python does for an unknown keyword) naming each of ``given``
    that is not in ``valid``, with the closest valid name; ``where`` names the caller and
    ``kind`` what the names are (``"ViTConfig field"``)."""
    unknown = [name for name in given if name not in valid]
    if unknown:
        hints = [f"{name!r}{did_you_mean(name, valid)}" for name in unknown]
        raise InputTypeError(
            f"{where} got unknown {kind}(s) {', '.join(hints)}; valid: {', '.join(valid)}."
        )


def did_you_mean(value: str, choices: Iterable[str], *, n: int = 1, cutoff: float = 0.6) -> str:
    """``" (did you mean 'x'?)"`` naming up to ``n`` close ``choices``, or ``""`` if none is close.

    The comparison ignores case, and the choices are shown as written.

    Examples:
        >>> did_you_mean("AdamW", ["adamw", "sgd"])
        " (did you mean 'adamw'?)"
    """
    by_lower = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(value.lower(), list(by_lower), n=n, cutoff=cutoff)
    if not close:
        return ""
    return f" (did you mean {' or '.join(repr(by_lower[match]) for match in close)}?)"


def check_layer_norm_eps(value: object) -> float:
    """Return ``layer_norm_eps`` as a float if it is in ``(0, MAX_LAYER_NORM_EPS]``."""
    return check_number(
        "layer_norm_eps",
        value,
        low=0.0,
        high=MAX_LAYER_NORM_EPS,
        low_open=True,
        fix="larger values normalise every token to about zero; common values are 1e-6 (the "
        "reference code), 1e-5 (PyTorch) and 1e-12 (Hugging Face)",
    )


def check_layer_scale_init(value: object) -> float | None:
    """Return ``layer_scale_init`` if None (off) or in ``(0, MAX_LAYER_SCALE_INIT]``."""
    if value is None:
        return None
    return check_number(
        "layer_scale_init",
        value,
        low=0.0,
        high=MAX_LAYER_SCALE_INIT,
        low_open=True,
        fix="CaiT uses 1e-5 to 0.1",
        expected=f"None (off) or a number in (0, {MAX_LAYER_SCALE_INIT:g}]",
    )


def to_pair(name: str, value: object) -> tuple[int, int]:
    """Return ``(height, width)`` from an int or a 2-sequence of ints >= 1."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise _refuse_value(name, value, "an int or a (height, width) pair")
        return check_positive_int(f"{name}[0]", value[0]), check_positive_int(
            f"{name}[1]", value[1]
        )
    if isinstance(value, bool) or not isinstance(value, int):
        raise type_error(name, value, "an int >= 1 or a (height, width) pair of them")
    size = check_positive_int(name, value)
    return size, size


def check_divisible(
    name: str,
    value: tuple[int, int],
    divisor_name: str,
    divisor: tuple[int, int],
    error: type[ValueError] = ConfigError,
) -> None:
    """Raise ``error`` unless each side of ``value`` is a multiple of the matching side of
    ``divisor`` (a config's image size and patch size, or an input's)."""
    if value[0] % divisor[0] or value[1] % divisor[1]:
        raise error(
            f"{name} {value[0]}x{value[1]} is not divisible by {divisor_name} "
            f"{divisor[0]}x{divisor[1]}; use a {name} that is a multiple of the {divisor_name} "
            f"(e.g. {value[0] // divisor[0] * divisor[0] or divisor[0]}x"
            f"{value[1] // divisor[1] * divisor[1] or divisor[1]})."
        )


def check_heads(embedding_dim: int, num_heads: int) -> None:
    """Raise unless ``num_heads`` divides ``embedding_dim`` (each head takes ``D / k`` dims)."""
    if embedding_dim % num_heads:
        window = {1, *range(max(1, num_heads - 64), num_heads + 65)}
        divisors = sorted(
            (d for d in window if embedding_dim % d == 0), key=lambda d: abs(d - num_heads)
        )
        close = ", ".join(str(d) for d in sorted(divisors[:3]))
        raise ConfigError(
            f"embedding_dim {embedding_dim} is not divisible by num_heads {num_heads}; each head "
            f"takes embedding_dim / num_heads dimensions, so choose num_heads among the divisors "
            f"of embedding_dim (e.g. {close})."
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

    It fails at once where torch's allocator would fail deep inside or swap for minutes; nothing
    is checked on the ``meta`` device, where nothing is allocated.

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
        f"{what} has {numel:,} parameters, {needed / 2**30:,.1f} GiB in "
        f"{str(torch.get_default_dtype()).removeprefix('torch.')}, more than the "
        f"{available / 2**30:,.1f} GiB of memory of this {device.type} device; most of them come "
        f"from {largest} ({parts[largest]:,}). {fix}"
    )


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
        return value  # the usual case, checked before any message is built
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


def check_range(name: str, bounds: object, *, upper: float) -> tuple[float, float]:
    """Return ``bounds`` as ``(low, high)`` if it is a pair of numbers with
    ``0 < low <= high <= upper`` (crop areas and aspect ratios), else raise."""
    pair = check_sequence(name, bounds, "a pair (low, high)")
    if len(pair) != 2:
        raise ConfigError(f"{name} must be a pair (low, high), got {bounds!r}.")
    low, high = (check_number(f"each of {name}", side, low=0.0, low_open=True) for side in pair)
    if not low <= high <= upper:
        raise ConfigError(
            f"{name} must be a pair (low, high) with 0 < low <= high <= {upper:g}, got {bounds!r}."
        )
    return low, high
