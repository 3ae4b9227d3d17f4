"""The paper's linear evaluation: extract_features and linear_probe, checked against
scikit-learn's RidgeClassifier and against the closed form solved by hand."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import RidgeClassifier

import vitlib
from vitlib.cli import main
from vitlib.errors import ConfigError, DataError
from vitlib.inference import Features, ProbeResult, extract_features, linear_probe
from vitlib.inference.probe import L2_GRID, ridge_fit

from .helpers import tiny_vit
from .image_helpers import write_image_folder


def _blobs(per_class: int, classes: int, width: int, seed: int) -> Features:
    """Gaussian blobs: class centres drawn once (seed 0), points around them from ``seed``."""
    centres = torch.randn(classes, width, generator=torch.Generator().manual_seed(0)) * 2
    labels = torch.arange(per_class * classes) % classes
    noise = torch.randn(len(labels), width, generator=torch.Generator().manual_seed(seed))
    names = tuple(f"class{index}" for index in range(classes))
    return Features((centres[labels] + noise).float(), labels, names)


@settings(max_examples=20)
@given(
    classes=st.integers(2, 5),
    per_class=st.integers(1, 12),
    width=st.integers(1, 20),
    l2=st.sampled_from([1e-3, 0.5, 1.0, 30.0]),
    seed=st.integers(0, 1000),
)
def test_the_probe_predicts_as_scikit_learns_ridge_classifier(
    classes: int, per_class: int, width: int, l2: float, seed: int
) -> None:
    """Both solvers (more images than features, and fewer) against RidgeClassifier."""
    train, test = _blobs(per_class, classes, width, seed), _blobs(6, classes, width, seed + 1)
    x = train.features.numpy().astype(np.float64)  # scikit-learn solves in the input's dtype
    reference = RidgeClassifier(alpha=l2).fit(x, train.labels.numpy())
    weight, bias = ridge_fit(train.features, train.labels, classes, l2)
    scores = (test.features.double() @ weight + bias).numpy()
    decision = reference.decision_function(test.features.numpy().astype(np.float64))
    if classes == 2:  # scikit-learn keeps one column, +1 for the second class
        np.testing.assert_allclose(decision, scores[:, 1], rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_allclose(decision, scores, rtol=1e-6, atol=1e-6)
    result = linear_probe(None, train, test, l2=l2)
    score = reference.score(test.features.numpy().astype(np.float64), test.labels.numpy())
    assert result.accuracy == pytest.approx(score)


def test_the_closed_form_solved_by_hand() -> None:
    """Two features, three images, two classes: the normal equations with an unpenalised bias,
    written out and solved with numpy, give the same weight and bias."""
    x = torch.tensor([[0.0, 1.0], [2.0, 0.0], [1.0, 3.0]])
    labels = torch.tensor([0, 1, 0])
    l2 = 0.5
    targets = np.array([[1.0, -1.0], [-1.0, 1.0], [1.0, -1.0]])
    design = np.hstack([x.double().numpy(), np.ones((3, 1))])  # the bias as a third column
    penalty = np.diag([l2, l2, 0.0])  # ... that is not penalised
    solution = np.linalg.solve(design.T @ design + penalty, design.T @ targets)
    weight, bias = ridge_fit(x, labels, 2, l2)
    np.testing.assert_allclose(weight.numpy(), solution[:2], atol=1e-12)
    np.testing.assert_allclose(bias.numpy(), solution[2], atol=1e-12)


def test_l2_is_chosen_on_held_out_training_images_and_shots_draw_per_seed() -> None:
    train, test = _blobs(30, 4, 6, seed=1), _blobs(10, 4, 6, seed=2)
    result = linear_probe(None, train, test, shots=(1, 5), seeds=(0, 1, 2))
    assert isinstance(result, ProbeResult)
    assert result.l2_chosen
    assert result.l2 in L2_GRID
    assert [shot.shots for shot in result.shots] == [1, 5]
    assert all(len(shot.accuracies) == 3 for shot in result.shots)
    assert result.shots[0].mean <= result.shots[1].mean + 0.1  # more shots, not much worse
    assert result.accuracy >= 0.85  # the blobs overlap a little
    reference = RidgeClassifier(alpha=result.l2).fit(
        train.features.double().numpy(), train.labels.numpy()
    )
    score = reference.score(test.features.double().numpy(), test.labels.numpy())
    assert result.accuracy == pytest.approx(score)
    again = linear_probe(None, train, test, shots=(1, 5), seeds=(0, 1, 2))
    assert again == result, "the draws are seeded"
    one = result.shots[0]
    assert one.mean == pytest.approx(float(np.mean(one.accuracies)))
    assert one.std == pytest.approx(float(np.std(one.accuracies)))
    data = result.to_dict()
    assert data["shots"][1]["shots"] == 5
    assert "5 shot(s) per class" in result.summary()


def test_bad_requests_are_refused_with_the_numbers() -> None:
    train, test = _blobs(3, 2, 4, seed=1), _blobs(3, 2, 4, seed=2)
    with pytest.raises(DataError, match=r"asks for 5 training images per class, .* has 3"):
        linear_probe(None, train, test, shots=(5,), l2=1.0)
    with pytest.raises(ConfigError, match="seeds must name at least one seed"):
        linear_probe(None, train, test, shots=(1,), seeds=(), l2=1.0)
    with pytest.raises(ConfigError, match=r"l2 must be a finite number >= 0, got -1"):
        linear_probe(None, train, test, l2=-1.0)
    with pytest.raises(ConfigError, match="model is None"):
        linear_probe(None, "some/folder", test)
    other = Features(test.features, test.labels, ("x", "y"))
    with pytest.raises(DataError, match="the same classes"):
        linear_probe(None, train, other, l2=1.0)
    lonely = Features(train.features[:3], torch.tensor([0, 1, 1]), train.classes)
    with pytest.raises(DataError, match=r"'class0' has 1 training image.*Pass l2"):
        linear_probe(None, lonely, test)


def test_features_of_a_folder_are_the_pre_logits_of_its_prepared_images(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", per_class=2)
    model = tiny_vit(num_classes=0)  # a backbone without a head works too
    found = extract_features(model, root, batch_size=3)
    assert found.classes == tuple(sorted(path.name for path in root.iterdir()))
    assert found.features.shape == (len(found), model.config.num_features)
    dataset = vitlib.data.ImageFolderDataset(
        root, vitlib.data.Preprocessing.imagenet(16).transform()
    )
    with torch.no_grad():
        image, label = dataset[3]
        expected = model.forward_head(model.forward_features(image[None]), pre_logits=True)
    torch.testing.assert_close(found.features[3], expected[0])
    assert int(found.labels[3]) == label


def test_the_cache_is_read_back_and_replaced_when_the_files_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = write_image_folder(tmp_path / "data", per_class=2)
    cache = tmp_path / "cache" / "features.safetensors"
    model = tiny_vit()
    first = extract_features(model, root, cache=cache)
    assert cache.is_file()
    calls = []
    monkeypatch.setattr(model, "forward_features", lambda *a: calls.append(1))
    again = extract_features(model, root, cache=cache)
    assert calls == [], "read from the cache, the model not run"
    torch.testing.assert_close(again.features, first.features)
    monkeypatch.undo()
    changed = sorted(root.rglob("*.png"))[0]
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    calls_before: list[int] = []
    forward_features = model.forward_features

    def counted(images: torch.Tensor) -> torch.Tensor:
        calls_before.append(1)
        return forward_features(images)

    monkeypatch.setattr(model, "forward_features", counted)
    extract_features(model, root, cache=cache)
    assert calls_before, "a changed file invalidates the cache"
    with pytest.raises(DataError, match="keys the features by a folder"):
        extract_features(model, [(torch.rand(2, 3, 16, 16), torch.tensor([0, 1]))], cache=cache)


def test_the_probe_command_prints_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    write_image_folder(data / "train", per_class=6)
    write_image_folder(data / "test", per_class=2, seed=7)
    vitlib.save_pretrained(tiny_vit(), tmp_path / "ck")
    code = main(["probe", str(tmp_path / "ck"), "--data", str(data), "--shots", "1", "2"])
    assert code == 0
    out = capsys.readouterr().out
    assert "all training images: test accuracy" in out
    assert "  2 shot(s) per class" in out
    assert main(["probe", str(tmp_path / "ck"), "--data", str(data), "--json"]) == 0
    assert '"accuracy"' in capsys.readouterr().out
