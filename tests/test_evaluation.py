"""vitlib.evaluate_model and vitlib evaluate: the numbers of training's evaluate, and more."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import vitlib
from vitlib.checkpoints import attach_metadata
from vitlib.cli import main
from vitlib.data import ImageFolderDataset, Preprocessing
from vitlib.errors import DataError
from vitlib.training import evaluate

from .helpers import tiny_vit
from .image_helpers import COLOURS, write_image_folder

LABELS = ["blue", "green", "red"]  # the sorted class folders of COLOURS


def _model(seed: int = 0) -> vitlib.ViT:
    model = tiny_vit(seed=seed, num_classes=3)
    attach_metadata(model, labels=LABELS, preprocessing=Preprocessing.imagenet(16))
    return model


def test_loss_and_accuracy_equal_training_evaluate_on_the_same_loader() -> None:
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(37, 3, 16, 16, generator=generator), torch.arange(37) % 5)
    loader = DataLoader(data, batch_size=8)
    model = tiny_vit()
    report = vitlib.evaluate_model(model, loader)
    expected = evaluate(model, loader)
    assert (report.loss, report.accuracy, report.samples) == (
        expected.loss,
        expected.accuracy,
        expected.samples,
    )


def test_an_image_folder_gives_the_numbers_of_evaluate_on_its_test_loader(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "images", per_class=3)
    model = _model()
    report = vitlib.evaluate_model(model, folder, batch_size=4)
    dataset = ImageFolderDataset(folder, Preprocessing.imagenet(16).transform())
    expected = evaluate(model, DataLoader(dataset, batch_size=4))
    assert (report.loss, report.accuracy) == (expected.loss, expected.accuracy)
    matrix = torch.tensor(report.confusion_matrix)
    assert int(matrix.sum()) == report.samples == 9
    assert matrix.sum(dim=1).tolist() == [3, 3, 3]
    assert report.accuracy == pytest.approx(float(matrix.diag().sum()) / 9)


def test_per_class_metrics_top_k_and_mistakes_follow_their_definitions() -> None:
    logits = torch.tensor([[3.0, 0, 0], [0, 3, 0], [0, 2, 3], [2, 3, 0], [0, 0, 3], [3, 2, 0]])
    labels = torch.tensor([0, 1, 1, 0, 2, 1])

    class Fixed(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return logits[images[:, 0, 0, 0].long()]

    model = tiny_vit(num_classes=3)
    model.forward = Fixed().forward  # type: ignore[method-assign]
    images = torch.arange(6).float().view(6, 1, 1, 1).expand(6, 3, 16, 16)
    report = vitlib.evaluate_model(model, DataLoader(TensorDataset(images, labels), batch_size=4))
    # predictions 0 1 2 1 2 0 against 0 1 1 0 2 1: rows true, columns predicted
    assert report.confusion_matrix == ((1, 1, 0), (1, 1, 1), (0, 0, 1))
    first, second, third = report.per_class
    assert (first.precision, first.recall, first.support) == (0.5, 0.5, 2)
    assert second.precision == 0.5
    assert second.recall == pytest.approx(1 / 3)
    assert second.f1 == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    assert (third.precision, third.recall) == (0.5, 1.0)
    assert report.accuracy == 0.5
    assert report.top_k == 3
    assert report.top_k_accuracy == 1.0
    assert sorted(mistake.source for mistake in report.mistakes) == [
        "sample 2",
        "sample 3",
        "sample 5",
    ]
    assert report.mistakes[0].confidence >= report.mistakes[-1].confidence


def test_a_hand_built_folder_with_some_classes_is_matched_by_name(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "images", per_class=2)
    shutil.rmtree(folder / "blue")
    report = vitlib.evaluate_model(_model(), folder)
    assert report.labels == tuple(LABELS)
    assert [metrics.support for metrics in report.per_class] == [0, 2, 2]
    (folder / "purple").mkdir()
    shutil.copy(folder / "red" / "0.png", folder / "purple" / "0.png")
    with pytest.raises(DataError, match=r"class folders \['purple'\] that the model does not know"):
        vitlib.evaluate_model(_model(), folder)


def test_digits_need_a_digits_model() -> None:
    with pytest.raises(DataError, match="1-channel images and 10 classes"):
        vitlib.evaluate_model(_model(), "digits")


def test_evaluate_command_writes_the_report_and_pictures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_image_folder(tmp_path / "images", per_class=2)
    checkpoint = vitlib.save_pretrained(_model(), tmp_path / "run" / "best")
    out = tmp_path / "evaluation"
    assert (
        main(["evaluate", str(checkpoint.parent), "--data", str(folder), "--output-dir", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "accuracy" in printed
    assert "precision" in printed
    report = json.loads((out / "report.json").read_text())
    assert report == {
        **vitlib.evaluate_model(checkpoint, folder).to_dict(),
        "confusion_matrix_png": "confusion_matrix.png",
        **({"mistakes_png": "mistakes.png"} if report["most_confident_mistakes"] else {}),
    }
    assert (out / "confusion_matrix.png").read_bytes().startswith(b"\x89PNG")
    assert main(["evaluate", str(checkpoint), "--data", str(folder), "--output-dir", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    argv = ["evaluate", str(checkpoint), "--data", str(folder), "--output-dir", str(out)]
    assert main([*argv, "--overwrite", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["samples"] == 6
    assert COLOURS  # the folder's classes


def test_evaluate_mistakes_picture_is_drawn_when_there_are_mistakes(tmp_path: Path) -> None:
    folder = write_image_folder(tmp_path / "images", per_class=2)
    report = vitlib.evaluate_model(_model(), folder)
    assert report.mistakes, "an untrained model makes mistakes"
    report.save(tmp_path / "out")
    assert (tmp_path / "out" / "mistakes.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(FileExistsError):
        report.save(tmp_path / "out")
