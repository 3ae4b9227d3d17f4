"""--resize and --crop-ratio: how a run's evaluation (and prediction) images fit the model's square
input, saved with the model; the default for image folders keeps an object near an edge."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import vitlib
from vitlib.checkpoints import model_metadata
from vitlib.cli import main
from vitlib.data import Preprocessing
from vitlib.training import recipe

from .image_helpers import write_image_folder

TINY = [
    "--preset", "ViT-Ti/4", "--image-size", "8", "--layers", "1", "--batch-size", "4",
    "--epochs", "1", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_image_folder(root / "train", per_class=3)
    write_image_folder(root / "test", per_class=1)
    return root


def _saved_preprocessing(data: Path, run: Path, *flags: str) -> Preprocessing:
    assert main(["train", "--data", str(data), *TINY, "--output-dir", str(run), *flags]) == 0
    spec = model_metadata(vitlib.load_pretrained(run)).preprocessing
    assert spec is not None
    return spec


@pytest.mark.parametrize(
    ("flags", "resize", "ratio"),
    [
        ([], "squash", 1.0),
        (["--resize", "shorter-side"], "center_crop", 1.0),
        (["--resize", "shorter-side", "--crop-ratio", "0.875"], "center_crop", 0.875),
        (["--crop-ratio", "0.9"], "center_crop", 0.9),
        (["--resize", "squash"], "squash", 1.0),
    ],
)
def test_the_flags_are_saved_with_the_model(
    data: Path, tmp_path: Path, flags: list[str], resize: str, ratio: float
) -> None:
    spec = _saved_preprocessing(data, tmp_path / "run", *flags)
    assert (spec.resize, spec.crop_ratio, spec.image_size) == (resize, ratio, (8, 8))


def test_predict_prepares_images_as_the_run_says(data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    spec = _saved_preprocessing(data, run, "--resize", "shorter-side", "--crop-ratio", "0.5")
    image = data / "test" / "red" / "0.png"
    model = vitlib.load_pretrained(run).eval()
    with torch.no_grad():
        logits = model(spec.transform()(Image.open(image).convert("RGB"))[None])
    (prediction,) = vitlib.predict(run, [image], top_k=1)
    assert prediction.probabilities[0] == pytest.approx(logits.softmax(-1).max().item(), abs=1e-6)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--resize", "squash"], "--resize and --crop-ratio prepare the images of a --data folder"),
        (["--crop-ratio", "0.9"], "but this run is on the embedded digits"),
    ],
)
def test_the_digits_refuse_the_flags_before_loading_anything(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    flags: list[str],
    message: str,
) -> None:
    def no_data(*args: object) -> None:
        raise AssertionError("the data was loaded before the options were checked")

    monkeypatch.setattr(recipe, "load_data", no_data)
    assert main(["train", *flags, "--output-dir", str(tmp_path / "run")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert message in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--resize", "squash", "--crop-ratio", "0.5"], "--crop-ratio 0.5 with --resize squash"),
        (["--crop-ratio", "1.5"], "--crop-ratio must be a number in [0.1, 1], got 1.5"),
        (["--crop-ratio", "0.05"], "--crop-ratio must be a number in [0.1, 1], got 0.05"),
        (["--resize", "crop"], "argument --resize: invalid choice: 'crop'"),
    ],
)
def test_contradictory_or_out_of_range_flags_are_refused_in_one_line(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    argv = ["train", "--data", str(data), *TINY, "--output-dir", str(tmp_path / "run"), *flags]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert message in line
    assert not (tmp_path / "run").exists()


def _object_at_the_left_edge() -> Image.Image:
    """A wide photo (200 x 64) whose only object touches its left edge."""
    image = Image.new("RGB", (200, 64))
    image.paste((255, 255, 255), (0, 22, 20, 42))
    return image


def test_the_default_for_folders_keeps_an_object_at_the_edge_that_a_centre_crop_cuts(
    data: Path, tmp_path: Path
) -> None:
    """The measurement of docs/training.md in one picture: squashing keeps the whole photo."""
    default = _saved_preprocessing(data, tmp_path / "run")
    # brightest prepared pixel, back in [0, 1]: the object is white on black
    for spec, kept in (
        (default, True),
        (Preprocessing((32, 32), resize="center_crop", crop_ratio=1.0), False),
        (Preprocessing((32, 32), resize="center_crop", crop_ratio=0.875), False),
    ):
        pixels = spec.transform()(_object_at_the_left_edge())
        std, mean = torch.tensor(spec.std)[:, None, None], torch.tensor(spec.mean)[:, None, None]
        brightest = float((pixels * std + mean).max())
        assert (brightest > 0.5) == kept, (spec.resize, spec.crop_ratio)


def test_help_offers_the_flags_on_train_and_finetune(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("train", "finetune"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for flag in ("--val-split", "--resize {squash,shorter-side}", "--crop-ratio"):
            assert flag in text, (command, flag)
        assert "(default: 0.1)" in text
