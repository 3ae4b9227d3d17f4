"""`linear_probe`: the paper's linear evaluation of frozen features (Sec. 4.1, Fig. 3-4, the
few-shot columns of Table 2).

A regularised least-squares fit of the features to targets in ``{-1, 1}^K`` (+1 for the true
class, -1 for the others), with an unregularised bias, in closed form; the predicted class is
the largest output. This is scikit-learn's ``RidgeClassifier`` (centre the features and the
targets, solve the ridge system, put the means back into the bias). ``l2`` is chosen, when
not given, on a held-out fifth of the training set over ``L2_GRID``; few-shot accuracy draws
``k`` training images per class over several seeds. docs/probe.md tells how to read the numbers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import torch
from torch import Tensor

from vitlib._checks import check_int, check_number, check_positive_int, check_sequence
from vitlib.errors import ConfigError, DataError
from vitlib.inference.features import Features, FeatureSource, extract_features
from vitlib.vit import ViT

__all__ = ["L2_GRID", "ProbeResult", "ShotResult", "linear_probe", "ridge_fit"]

#: The ``l2`` values tried when none is given: ``2**-10`` to ``2**19``, as big_vision's few-shot
#: evaluator tries.
L2_GRID: Final[tuple[float, ...]] = tuple(2.0**power for power in range(-10, 20))
_HELD_OUT: Final = 0.2  # the fraction of each class held out to choose l2


@dataclass(frozen=True)
class ShotResult:
    """Test accuracy of probes fit on ``shots`` training images per class, one per seed.

    Attributes:
        shots: Training images per class.
        mean: Mean test accuracy over the seeds.
        std: Their standard deviation (population), the spread between draws.
        accuracies: One test accuracy per seed, in seed order.
    """

    shots: int
    mean: float
    std: float
    accuracies: tuple[float, ...]


@dataclass(frozen=True)
class ProbeResult:
    """A linear probe's test accuracy, on the whole training set and per number of shots.

    Attributes:
        accuracy: Test accuracy of the probe fit on every training image.
        l2: The ridge penalty used (given, or chosen on held-out training images).
        l2_chosen: Whether ``l2`` was chosen (False when the caller gave it).
        shots: The few-shot results, by number of shots.
        classes: The class names, in label order.
        train_size: Training images.
        test_size: Test images.
    """

    accuracy: float
    l2: float
    l2_chosen: bool
    shots: tuple[ShotResult, ...]
    classes: tuple[str, ...]
    train_size: int
    test_size: int

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON values."""
        data = asdict(self)
        data["classes"] = list(self.classes)
        data["shots"] = [{**shot, "accuracies": list(shot["accuracies"])} for shot in data["shots"]]
        return data

    def summary(self) -> str:
        """The result for people: accuracy on every training image, then per number of shots."""
        lines = [
            f"linear probe, {len(self.classes)} classes, {self.train_size} train / "
            f"{self.test_size} test images, l2 {self.l2:g} "
            f"({'chosen on held-out training images' if self.l2_chosen else 'given'})",
            f"all training images: test accuracy {self.accuracy:.4f}",
        ]
        for shot in self.shots:
            lines.append(
                f"{shot.shots:>3} shot(s) per class: {shot.mean:.4f} +- {shot.std:.4f} "
                f"({len(shot.accuracies)} draws)"
            )
        return "\n".join(lines)


def ridge_fit(features: Tensor, labels: Tensor, classes: int, l2: float) -> tuple[Tensor, Tensor]:
    """The closed-form probe: ``(weight (F, K), bias (K,))`` minimising
    ``||X W + b - Y||^2 + l2 ||W||^2`` for targets ``Y`` in ``{-1, 1}^K``, the bias unpenalised.

    Solved in float64 on the centred data, through the smaller of the two Gram matrices
    (``X^T X`` when there are more images than features, else ``X X^T``: few-shot fits are cheap).
    """
    x = features.double()
    targets = -torch.ones(len(labels), classes, dtype=torch.float64)
    targets[torch.arange(len(labels)), labels] = 1.0
    x_mean, y_mean = x.mean(dim=0), targets.mean(dim=0)
    centred, centred_targets = x - x_mean, targets - y_mean
    rows, width = centred.shape
    if rows >= width:
        gram = centred.T @ centred + l2 * torch.eye(width, dtype=torch.float64)
        weight = torch.linalg.solve(gram, centred.T @ centred_targets)
    else:
        gram = centred @ centred.T + l2 * torch.eye(rows, dtype=torch.float64)
        weight = centred.T @ torch.linalg.solve(gram, centred_targets)
    return weight, y_mean - x_mean @ weight


def _accuracy(weight: Tensor, bias: Tensor, test: Features) -> float:
    predicted = (test.features.double() @ weight + bias).argmax(dim=1)
    return float((predicted == test.labels).double().mean())


def linear_probe(
    model: ViT | str | os.PathLike[str] | None,
    train: FeatureSource | Features,
    test: FeatureSource | Features,
    *,
    shots: Sequence[int] | None = None,
    l2: float | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> ProbeResult:
    """How well a model's frozen features separate the classes of ``train`` and ``test``.

    Args:
        model: A [`ViT`][vitlib.ViT] or anything [`load_pretrained`][vitlib.load_pretrained]
            reads, whose features are taken with
            [`extract_features`][vitlib.extract_features]; None when ``train`` and ``test``
            are already ``Features``.
        train: The probe's training images: a folder of class folders, a ``Dataset``, batches,
            or their ``Features``.
        test: The images it is scored on, with the same classes (for folders: the same class
            folder names).
        shots: Numbers of training images per class to probe with too (the paper's 1, 5, 10
            and 25), each drawn once per seed.
        l2: The ridge penalty; None chooses it from ``L2_GRID`` on a held-out fifth of each
            class of ``train`` (then used for every fit, the few-shot ones included).
        seeds: The draws of each number of shots.
        batch_size: Images per forward pass when extracting features.
        device: Where to run the model; default its device.

    Returns:
        [`ProbeResult`][vitlib.inference.probe.ProbeResult].

    Raises:
        DataError: The two sets have different classes or feature widths, a class of ``train``
            has fewer images than a number of ``shots``, or too few to hold some out for
            ``l2``.
        ConfigError: ``l2`` is not a finite number >= 0, or ``shots``/``seeds`` are empty or
            not positive.

    Examples:
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> blobs = torch.randn(3, 8) * 4
        >>> labels = torch.arange(60) % 3
        >>> train = Features(blobs[labels] + torch.randn(60, 8), labels, ("a", "b", "c"))
        >>> test = Features(blobs[labels] + torch.randn(60, 8), labels, ("a", "b", "c"))
        >>> linear_probe(None, train, test, l2=1.0).accuracy
        1.0
    """
    train_set, test_set = (
        _features(model, data, name, batch_size, device)
        for name, data in (("train", train), ("test", test))
    )
    _check_same_task(train_set, test_set)
    classes = len(train_set.classes)
    counts = torch.bincount(train_set.labels, minlength=classes)
    wanted = _check_shots(shots, seeds, counts, train_set.classes)
    if l2 is None:
        penalty, chosen = _choose_l2(train_set, classes), True
    else:
        penalty, chosen = check_number("l2", l2, low=0.0), False
    accuracy = _accuracy(
        *ridge_fit(train_set.features, train_set.labels, classes, penalty), test_set
    )
    results = []
    for count in wanted:
        accuracies = tuple(
            _accuracy(*_fit_shots(train_set, classes, count, seed, penalty), test_set)
            for seed in seeds
        )
        values = torch.tensor(accuracies, dtype=torch.float64)
        results.append(
            ShotResult(count, float(values.mean()), float(values.std(unbiased=False)), accuracies)
        )
    return ProbeResult(
        accuracy, penalty, chosen, tuple(results), train_set.classes, len(train_set), len(test_set)
    )


def _features(
    model: ViT | str | os.PathLike[str] | None,
    data: FeatureSource | Features,
    name: str,
    batch_size: int,
    device: torch.device | str | None,
) -> Features:
    if isinstance(data, Features):
        return data
    if model is None:
        raise ConfigError(
            f"{name} is not Features, so its features must be extracted, but model is None; "
            "pass the model, or Features from vitlib.extract_features."
        )
    return extract_features(model, data, batch_size=batch_size, device=device)


def _check_same_task(train: Features, test: Features) -> None:
    if train.classes != test.classes:
        raise DataError(
            f"the training set has classes {list(train.classes)[:10]} but the test set has "
            f"{list(test.classes)[:10]}; expected the same classes, in the same order."
        )
    if train.features.shape[1] != test.features.shape[1]:
        raise DataError(
            f"the training features are {train.features.shape[1]} wide but the test features "
            f"{test.features.shape[1]}; extract both with the same model."
        )


def _check_shots(
    shots: Sequence[int] | None, seeds: Sequence[int], counts: Tensor, classes: Sequence[str]
) -> list[int]:
    if shots is None:
        return []
    wanted = [
        check_positive_int("each of shots", value)
        for value in check_sequence("shots", shots, "numbers of images per class, e.g. (1, 5)")
    ]
    given = check_sequence("seeds", seeds, "a list of ints, e.g. (0, 1, 2)")
    if not given:
        raise ConfigError("seeds must name at least one seed, got ().")
    for seed in given:
        check_int("each of seeds", seed)
    fewest = int(counts.min())
    if wanted and max(wanted) > fewest:
        poorest = classes[int(counts.argmin())]
        raise DataError(
            f"shots asks for {max(wanted)} training images per class, but class {poorest!r} "
            f"has {fewest}; expected shots of at most {fewest}."
        )
    return wanted


def _fit_shots(
    train: Features, classes: int, count: int, seed: int, l2: float
) -> tuple[Tensor, Tensor]:
    """The probe fit on ``count`` training images per class, drawn with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    picked = torch.cat(
        [
            members[torch.randperm(len(members), generator=generator)[:count]]
            for members in _members(train.labels, classes)
        ]
    )
    return ridge_fit(train.features[picked], train.labels[picked], classes, l2)


def _members(labels: Tensor, classes: int) -> Iterable[Tensor]:
    return ((labels == label).nonzero().flatten() for label in range(classes))


def _choose_l2(train: Features, classes: int) -> float:
    """The ``L2_GRID`` value whose probe, fit on four fifths of each class, is most accurate
    on the other fifth; of equally accurate ones, the one whose outputs are nearest the targets
    (the least squared error, the quantity the probe minimises)."""
    generator = torch.Generator().manual_seed(0)
    held, kept = [], []
    for label, members in enumerate(_members(train.labels, classes)):
        if len(members) < 2:
            raise DataError(
                f"class {train.classes[label]!r} has {len(members)} training image(s); choosing "
                "l2 holds some out of each class, so it needs at least 2. Pass l2=... instead."
            )
        order = members[torch.randperm(len(members), generator=generator)]
        split = max(1, round(len(members) * _HELD_OUT))
        held.append(order[:split])
        kept.append(order[split:])
    fit_on, score_on = torch.cat(kept), torch.cat(held)
    fit = Features(train.features[fit_on], train.labels[fit_on], train.classes)
    scored = Features(train.features[score_on], train.labels[score_on], train.classes)
    scores = []
    for l2 in L2_GRID:
        weight, bias = ridge_fit(fit.features, fit.labels, classes, l2)
        outputs = scored.features.double() @ weight + bias
        targets = -torch.ones_like(outputs)
        targets[torch.arange(len(scored)), scored.labels] = 1.0
        error = float(((outputs - targets) ** 2).mean())
        scores.append((_accuracy(weight, bias, scored), -error, l2))
    return max(scores)[2]
