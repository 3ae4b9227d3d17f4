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
    "MissingExtraError",
    "SaveError",
    "VitlibError",
]


class VitlibError(Exception):
    """Base class of every exception vitlib raises on purpose."""


class ConfigError(VitlibError, ValueError):
    """A setting is out of range or inconsistent with another one: a ``ViTConfig`` field, an
    argument of a vitlib function (``batch_size=0``) or a command-line flag."""


class InputShapeError(VitlibError, ValueError):
    """A tensor given to a block or model has the wrong rank, channel count or spatial size."""


class InputTypeError(VitlibError, TypeError):
    """An argument has the wrong type (``batch_size="8"``, a NumPy array where a tensor is
    expected), or a tensor's dtype or device does not match the model's weights."""


class MissingExtraError(VitlibError, ImportError):
    """An optional dependency of vitlib (one of its extras) is not installed; the message names
    the ``pip install "vitlib[extra]"`` that brings it."""


class DataError(VitlibError, ValueError):
    """A data set, folder or data-loading setting is unusable (empty, misnamed, inconsistent)."""


class CheckpointError(VitlibError, ValueError):
    """A checkpoint cannot be read, recognised or mapped onto a vitlib model."""


class SaveError(VitlibError, OSError):
    """Files could not be written into a folder for lack of room or a failing file system: the
    disk is full, a file-size limit (``ulimit -f``) or a disk quota was reached, the file system
    is read-only or reported an I/O error.

    An ``OSError`` (code that catches disk-full errors keeps working) and a
    [`VitlibError`][vitlib.errors.VitlibError]. ``errno`` is the system's code where it is known
    (``errno.ENOSPC``, ``errno.EFBIG``...; ``None`` when the writer, such as ``torch.save``, does
    not say), ``filename`` the folder written into, and ``__cause__`` the writer's own error. The
    message says what the folder holds: its previous files, untouched.
    """

    def __str__(self) -> str:
        return str(self.strerror)
