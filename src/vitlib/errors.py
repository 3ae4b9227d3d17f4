"""Exceptions raised by vitlib.

Every exception subclasses a built-in (``ValueError``, ``TypeError``, ``KeyError``...), so code that
already catches the built-in keeps working; catch [`VitlibError`][vitlib.errors.VitlibError] to
handle any vitlib failure.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "InputShapeError",
    "InputTypeError",
    "InsufficientMemoryError",
    "MissingExtraError",
    "VitlibError",
]


class VitlibError(Exception):
    """Base class of every exception vitlib raises on purpose."""


class ConfigError(VitlibError, ValueError):
    """A model configuration value is out of range or inconsistent with another one."""


class InputShapeError(VitlibError, ValueError):
    """A tensor given to a block or model has the wrong rank, channel count or spatial size."""


class InputTypeError(VitlibError, TypeError):
    """Input given to a block or model is not a tensor, or its dtype or device does not match
    the model's weights."""


class InsufficientMemoryError(VitlibError, RuntimeError):
    """A forward pass ran out of memory; the message names the batch and how to split it.

    A ``RuntimeError`` whose text keeps the allocator's own message, so code that retries with a
    smaller batch on torch's CPU out-of-memory error keeps working.
    """


class MissingExtraError(VitlibError, ImportError):
    """An optional dependency of vitlib (one of its extras) is not installed; the message names
    the ``pip install "vitlib[extra]"`` that brings it."""


class DataError(VitlibError, ValueError):
    """A data set, folder or data-loading setting is unusable (empty, misnamed, inconsistent)."""


class CheckpointError(VitlibError, ValueError):
    """A checkpoint cannot be read, recognised or mapped onto a vitlib model."""
