"""Exceptions raised by vitlib.

Every exception subclasses a built-in (``ValueError``, ``TypeError``, ``KeyError``...), so code that
already catches the built-in keeps working; catch :class:`VitlibError` to handle any vitlib failure.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError", "DataError", "InputShapeError", "VitlibError"]


class VitlibError(Exception):
    """Base class of every exception vitlib raises on purpose."""


class ConfigError(VitlibError, ValueError):
    """A model configuration value is out of range or inconsistent with another one."""


class InputShapeError(VitlibError, ValueError):
    """A tensor given to a block or model has the wrong rank, channel count or spatial size."""


class DataError(VitlibError, ValueError):
    """A data set, folder or data-loading setting is unusable (empty, misnamed, inconsistent)."""


class CheckpointError(VitlibError, ValueError):
    """A checkpoint cannot be read, recognised or mapped onto a vitlib model."""
