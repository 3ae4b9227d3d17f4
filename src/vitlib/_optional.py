"""The error raised when an optional dependency (an extra of vitlib) is missing."""

from __future__ import annotations

from vitlib.errors import MissingExtraError


def missing_extra(package: str, extra: str, purpose: str) -> ImportError:
    """Build the error for a missing optional dependency.

    Args:
        package: The distribution that failed to import, e.g. ``"Pillow"``.
        extra: The vitlib extra that installs it, e.g. ``"data"``.
        purpose: What needed it, e.g. ``"ImageFolderDataset"``.

    Returns:
        An ``ImportError`` to raise ``from`` the original one.
    """
    return MissingExtraError(
        f"{purpose} needs {package}, which is not installed; "
        f'install it with: pip install "vitlib[{extra}]"'
    )
