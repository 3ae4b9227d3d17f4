"""`History`: the per-epoch record of a training run, and its one final test."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal, get_args

from vitlib._checks import check_choice

ValName = Literal["validation", "test"]
"""What ``fit``'s selection loader holds, as the history and its plots name it."""
VAL_NAMES: Final[tuple[ValName, ...]] = get_args(ValName)

_CURVES: Final = ("train_loss", "train_acc", "val_loss", "val_acc", "lr")
#: The names an earlier vitlib gave the selection curves (it called the loader test_loader).
_RENAMED: Final = {"test_loss": "val_loss", "test_acc": "val_acc"}


@dataclass(frozen=True)
class FinalTest:
    """The one evaluation of the test loader, after training, with the best epoch's weights.

    Attributes:
        loss: Per-sample mean cross-entropy on the test set.
        acc: Test accuracy in [0, 1].
        epoch: The 1-based epoch whose weights were tested (``History.best_epoch()``).
        samples: Test samples evaluated.
    """

    loss: float
    acc: float
    epoch: int
    samples: int


@dataclass
class History:
    """Per-epoch metrics, one list entry per epoch, and the final test.

    ``fit`` picks the best epoch (and saves it in ``best/``) by the ``val_*`` metrics: those of
    its selection loader, measured after every epoch. The test loader, if any, is evaluated once,
    at the end, with the best epoch's weights: ``test``. Numbers used to choose a model are
    optimistic about it; ``test`` is not.

    Attributes:
        train_loss: Per-sample mean training loss (label smoothing included, if used).
        train_acc: Training accuracy in [0, 1] (on augmented batches, with dropout active).
        val_loss: Per-sample mean cross-entropy on the selection loader (``fit``'s
            ``val_loader``).
        val_acc: Accuracy on the selection loader, in [0, 1].
        lr: Learning rate at the end of the epoch.
        val_name: What the selection loader holds: ``"validation"`` (images held out of
            training), or ``"test"`` when a run had no validation split and chose its best epoch
            on the test images (``vitlib train --val-split 0``, and the runs of an earlier
            vitlib, whose ``fit`` named this loader ``test_loader``).
        test: The final test, or ``None`` (no test loader, or not run yet).

    An earlier vitlib named ``val_loss`` and ``val_acc`` ``test_loss`` and ``test_acc``: those
    names still read them, with a ``DeprecationWarning``, and `from_dict` reads its files.
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    val_name: ValName = "validation"
    test: FinalTest | None = None

    def __post_init__(self) -> None:
        check_choice("val_name", self.val_name, VAL_NAMES)

    def append(
        self, *, train_loss: float, train_acc: float, val_loss: float, val_acc: float, lr: float
    ) -> None:
        """Record one epoch."""
        self.train_loss.append(float(train_loss))
        self.train_acc.append(float(train_acc))
        self.val_loss.append(float(val_loss))
        self.val_acc.append(float(val_acc))
        self.lr.append(float(lr))

    def __len__(self) -> int:
        return len(self.train_loss)

    @property
    def test_loss(self) -> list[float]:
        """Deprecated name of ``val_loss`` (an earlier vitlib named ``fit``'s selection loader
        ``test_loader``)."""
        return self._renamed("test_loss")

    @property
    def test_acc(self) -> list[float]:
        """Deprecated name of ``val_acc``."""
        return self._renamed("test_acc")

    def _renamed(self, name: str) -> list[float]:
        new = _RENAMED[name]
        warnings.warn(
            f"History.{name} is now History.{new}: the per-epoch metric of the loader fit selects "
            "the model on (its val_loader). The test set is evaluated once, at the end, with the "
            "best epoch's weights: History.test.",
            DeprecationWarning,
            stacklevel=3,
        )
        values: list[float] = getattr(self, new)
        return values

    def best_epoch(self) -> int:
        """The 1-based epoch with the best ``val_acc``; ties go to the lower ``val_loss``, then
        to the earlier epoch. ``fit`` keeps that epoch's model in ``best/`` and tests it.

        Raises:
            ValueError: The history is empty.
        """
        if not self.val_acc:
            raise ValueError("the history is empty; best_epoch needs at least one epoch.")
        ranked = zip(self.val_acc, self.val_loss, range(len(self.val_acc)), strict=True)
        best = max(ranked, key=lambda epoch: (epoch[0], -epoch[1], -epoch[2]))
        return best[2] + 1

    def as_dict(self) -> dict[str, Any]:
        """The five per-epoch lists by name, ``val_name`` and ``test`` (a dict of `FinalTest`'s
        fields, or ``None``): JSON-ready (``history.json``) and accepted by
        [`plot_history`][vitlib.analysis.plots.plot_history]."""
        data: dict[str, Any] = {name: list(getattr(self, name)) for name in _CURVES}
        data["val_name"] = self.val_name
        data["test"] = None if self.test is None else asdict(self.test)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        """Rebuild from [`as_dict`][vitlib.History.as_dict] output: the five lists, of
        one length; ``val_name`` and ``test`` if present.

        The ``history.json`` of an earlier vitlib (``test_loss`` and ``test_acc``, measured on
        the loader it selected the model on) reads as ``val_loss`` and ``val_acc`` with
        ``val_name="test"``.

        Raises:
            ValueError: A list is missing, the lists differ in length, or ``test`` is malformed.
        """
        values = dict(data)
        if not any(name in values for name in ("val_loss", "val_acc")) and "test_acc" in values:
            values = {_RENAMED.get(name, name): value for name, value in values.items()}
            values.setdefault("val_name", "test")
        missing = [name for name in _CURVES if name not in values]
        if missing:
            raise ValueError(f"history is missing {missing}; expected the keys {list(_CURVES)}.")
        lengths = {name: len(values[name]) for name in _CURVES}
        if len(set(lengths.values())) != 1:
            raise ValueError(
                f"history lists have lengths {lengths}; expected one entry per epoch in each."
            )
        test = values.get("test")
        try:
            final = None if test is None else FinalTest(**test)
        except TypeError as error:
            raise ValueError(
                f"history's test entry {test!r} is malformed; expected the keys loss, acc, "
                "epoch and samples."
            ) from error
        curves = {name: [float(value) for value in values[name]] for name in _CURVES}
        return cls(**curves, val_name=values.get("val_name", "validation"), test=final)
