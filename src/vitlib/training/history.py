"""`History`: the per-epoch record of a training run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields


@dataclass
class History:
    """Per-epoch metrics, one list entry per epoch.

    Attributes:
        train_loss: Per-sample mean training loss (label smoothing included, if used).
        train_acc: Training accuracy in [0, 1] (on augmented batches, with dropout active).
        test_loss: Per-sample mean cross-entropy on the test set.
        test_acc: Test accuracy in [0, 1].
        lr: Learning rate at the end of the epoch.
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)

    def append(
        self, *, train_loss: float, train_acc: float, test_loss: float, test_acc: float, lr: float
    ) -> None:
        """Record one epoch."""
        self.train_loss.append(float(train_loss))
        self.train_acc.append(float(train_acc))
        self.test_loss.append(float(test_loss))
        self.test_acc.append(float(test_acc))
        self.lr.append(float(lr))

    def __len__(self) -> int:
        return len(self.train_loss)

    def best_epoch(self) -> int:
        """The 1-based epoch with the best test accuracy; ties go to the lower test loss, then
        to the earlier epoch. ``fit`` keeps that epoch's model in ``best/``.

        Raises:
            ValueError: The history is empty.
        """
        if not self.test_acc:
            raise ValueError("the history is empty; best_epoch needs at least one epoch.")
        ranked = zip(self.test_acc, self.test_loss, range(len(self.test_acc)), strict=True)
        best = max(ranked, key=lambda epoch: (epoch[0], -epoch[1], -epoch[2]))
        return best[2] + 1

    def as_dict(self) -> dict[str, list[float]]:
        """The five lists by name: JSON-ready and accepted by
        [`plot_history`][vitlib.analysis.plots.plot_history]."""
        return {f.name: list(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[float]]) -> History:
        """Rebuild from [`as_dict`][vitlib.training.History.as_dict] output (all five keys, lists of
        one length)."""
        names = [f.name for f in fields(cls)]
        missing = [name for name in names if name not in data]
        if missing:
            raise ValueError(f"history is missing {missing}; expected the keys {names}.")
        lengths = {name: len(data[name]) for name in names}
        if len(set(lengths.values())) != 1:
            raise ValueError(
                f"history lists have lengths {lengths}; expected one entry per epoch in each."
            )
        return cls(**{name: [float(value) for value in data[name]] for name in names})
