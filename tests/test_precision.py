"""``precision=`` of `vitlib.predict` and `vitlib.evaluate_model` (``--precision`` of the
commands): the model's `optimize_for_inference` copy, close to the float32 model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import vitlib
from vitlib.checkpoints import attach_metadata
from vitlib.cli.main import main
from vitlib.data import Preprocessing
from vitlib.errors import ConfigError
from vitlib.inference.optimize import InferenceViT, Precision, at_precision

from .helpers import tiny_vit
from .image_helpers import write_image_folder

LABELS = ["red", "green", "blue"]


def _model() -> vitlib.ViT:
    model = tiny_vit(num_classes=3)
    attach_metadata(model, labels=LABELS, preprocessing=Preprocessing.imagenet(16))
    return model


@pytest.mark.parametrize(
    ("precision", "tolerance"), [("fp32", 1e-5), ("bf16", 5e-2), ("int8", 5e-2)]
)
def test_predict_at_a_precision_is_close_to_the_model(
    tmp_path: Path, precision: Precision, tolerance: float
) -> None:
    paths = sorted(write_image_folder(tmp_path, per_class=3).rglob("*.png"))
    model = _model()
    plain = vitlib.predict(model, paths, top_k=3)
    fast = vitlib.predict(model, paths, top_k=3, precision=precision)
    for a, b in zip(plain, fast, strict=True):
        by_label = dict(zip(b.labels, b.probabilities, strict=True))
        expected = torch.tensor(a.probabilities)
        got = torch.tensor([by_label[label] for label in a.labels])
        torch.testing.assert_close(got, expected, atol=tolerance, rtol=0)
    assert type(model) is vitlib.ViT, "the caller's model is not changed"


def test_evaluate_at_a_precision_reports_the_same_accuracy(tmp_path: Path) -> None:
    data = write_image_folder(tmp_path, per_class=3)
    model = _model()
    plain = vitlib.evaluate_model(model, data)
    fast = vitlib.evaluate_model(model, data, precision="fp32")
    assert fast.accuracy == plain.accuracy
    assert fast.loss == pytest.approx(plain.loss, abs=1e-5)


def test_none_is_the_model_itself_and_a_copy_otherwise() -> None:
    model = _model()
    cpu = torch.device("cpu")
    assert at_precision(model, None, cpu) is model
    copy = at_precision(model, "int8", cpu)
    assert isinstance(copy, InferenceViT)
    assert copy is not model


def test_bad_precisions_are_refused(tmp_path: Path) -> None:
    model = _model()
    with pytest.raises(ConfigError, match="precision must be one of"):
        vitlib.predict(model, torch.rand(3, 16, 16), precision="fp16")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"tuned for the CPU, but it is to run on cuda:0"):
        at_precision(model, "int8", torch.device("cuda:0"))


def test_the_commands_take_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_image_folder(tmp_path / "data", per_class=2)
    checkpoint = vitlib.save_pretrained(_model(), tmp_path / "model")
    image = next(iter(sorted(data.rglob("*.png"))))
    assert main(["predict", str(checkpoint), str(image), "--precision", "int8"]) == 0
    assert capsys.readouterr().out.startswith(f"{image}: ")
    argv = ["evaluate", str(checkpoint), "--data", str(data), "--precision", "bf16"]
    assert main([*argv, "--output-dir", str(tmp_path / "report")]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert main(["predict", str(checkpoint), str(image), "--precision", "fp16"]) == 2
    assert "invalid choice: 'fp16'" in capsys.readouterr().err
