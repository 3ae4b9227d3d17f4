"""The one "did you mean ...?" helper behind every unknown-name error."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["did_you_mean"]


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
