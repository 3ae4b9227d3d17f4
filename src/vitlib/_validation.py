"""Checks shared by the config and the blocks; each raises with the value given and the fix."""

from __future__ import annotations

from .errors import ConfigError

__all__ = ["check_divisible", "check_positive_int", "check_rate", "to_pair"]


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an ``int`` >= 1 (``bool`` excluded), else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {value!r} ({type(value).__name__}).")
    if value < 1:
        raise ConfigError(f"{name} must be >= 1, got {value}.")
    return value


def check_rate(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a probability in [0, 1), else raise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{name} must be a float in [0, 1), got {value!r} ({type(value).__name__})."
        )
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got {value}; use 0.0 to disable it.")
    return float(value)


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
