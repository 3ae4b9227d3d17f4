"""Import torchvision's pure-Python modules when its compiled ops cannot load (benchmarks only).

The only torchvision wheel for torch 2.13 here (0.28.0) is a CUDA build: its ``_C.so`` does not
load beside the CPU torch, so ``torchvision::nms`` and friends are never defined, and
``import torchvision`` dies in ``_meta_registrations.py`` on
``@torch.library.register_fake("torchvision::nms")`` ("operator torchvision::nms does not
exist"). The models (``torchvision.models.vision_transformer``) need none of those ops, so during
the import this makes every fake/meta/autograd registration for the ``torchvision::`` namespace a
no-op and leaves every other namespace alone. Detection ops (``torchvision.ops.nms``, ...) still
fail when called, as they should.

Used by ``benchmarks/peers.py`` only; nothing in ``src/`` imports it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import torch.library

_PATCHED = ("register_fake", "impl_abstract", "register_autograd")


def _is_torchvision_op(op: object) -> bool:
    return str(getattr(op, "_name", op)).startswith("torchvision::")


def _skipping(original: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(op: object, *args: Any, **kwargs: Any) -> Any:
        if not _is_torchvision_op(op):
            return original(op, *args, **kwargs)
        if args or "func" in kwargs or "backward" in kwargs:  # direct call: register nothing
            return None
        return lambda function: function  # decorator form: hand the function back unchanged

    return wrapper


@contextmanager
def _skip_torchvision_registrations() -> Iterator[None]:
    originals = {name: getattr(torch.library, name, None) for name in _PATCHED}
    for name, original in originals.items():
        if original is not None:
            setattr(torch.library, name, _skipping(original))
    try:
        yield
    finally:
        for name, original in originals.items():
            if original is not None:
                setattr(torch.library, name, original)


def import_torchvision() -> ModuleType:
    """``import torchvision``, skipping its ``torchvision::`` op registrations if they fail."""
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as error:
        if "torchvision::" not in str(error):
            raise
    import sys

    for name in [name for name in sys.modules if name.split(".")[0] == "torchvision"]:
        del sys.modules[name]  # the half-imported package from the failed try
    with _skip_torchvision_registrations():
        return importlib.import_module("torchvision")
