"""vitlib.predict: a saved model's classes for paths, PIL images and tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vitlib
from vitlib.checkpoints import attach_metadata
from vitlib.data import Preprocessing, SkippedImagesWarning
from vitlib.errors import DataError

from .helpers import tiny_vit
from .image_helpers import COLOURS, write_image, write_image_folder

LABELS = ["zebra", "apple", "mango", "kiwi", "fig"]


def _model() -> vitlib.ViT:
    model = tiny_vit()
    attach_metadata(model, labels=LABELS, preprocessing=Preprocessing.imagenet(16))
    return model


def _expected(model: vitlib.ViT, images: list[Image.Image]) -> torch.Tensor:
    transform = Preprocessing.imagenet(16).transform()
    with torch.no_grad():
        logits: torch.Tensor = model(torch.stack([transform(image) for image in images]))
    return logits.softmax(dim=-1)


def test_predictions_equal_the_models_forward_on_the_preprocessed_images(tmp_path: Path) -> None:
    paths = sorted(write_image_folder(tmp_path / "images", per_class=2).rglob("*.png"))
    model = _model()
    expected = _expected(model, [Image.open(path).convert("RGB") for path in paths])
    predictions = vitlib.predict(model, paths, top_k=3, batch_size=4)
    assert [prediction.source for prediction in predictions] == [str(path) for path in paths]
    for prediction, probabilities in zip(predictions, expected, strict=True):
        top = probabilities.topk(3)
        assert prediction.indices == tuple(top.indices.tolist())
        assert prediction.labels == tuple(LABELS[index] for index in top.indices.tolist())
        torch.testing.assert_close(torch.tensor(prediction.probabilities), top.values)


def test_paths_pil_images_and_tensors_give_the_same_predictions(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png", COLOURS["green"], (24, 20), seed=1)
    image = Image.open(path).convert("RGB")
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    model = _model()
    by_path, by_image, by_uint8, by_float = vitlib.predict(
        model, [path, image, pixels, pixels.float() / 255]
    )
    assert by_path.indices == by_image.indices == by_uint8.indices == by_float.indices
    assert by_path.probabilities == by_image.probabilities
    for by_tensor in (by_uint8, by_float):  # uint8 pixels are divided by 255, as Pillow's are
        torch.testing.assert_close(
            torch.tensor(by_tensor.probabilities), torch.tensor(by_path.probabilities)
        )
    assert [p.source for p in (by_image, by_uint8)] == ["image 1", "image 2"]


def test_batching_does_not_change_the_predictions(tmp_path: Path) -> None:
    paths = sorted(write_image_folder(tmp_path / "images", per_class=3).rglob("*.png"))
    model = _model()
    one_by_one = vitlib.predict(model, paths, batch_size=1)
    together = vitlib.predict(model, paths, batch_size=64)
    assert [p.indices for p in one_by_one] == [p.indices for p in together]
    for first, second in zip(one_by_one, together, strict=True):
        torch.testing.assert_close(
            torch.tensor(first.probabilities), torch.tensor(second.probabilities)
        )


def test_each_image_file_is_opened_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = sorted(write_image_folder(tmp_path / "images", per_class=2).rglob("*.png"))
    opened: list[str] = []
    real_open = Image.open

    def counting_open(path: object, *args: object, **kwargs: object) -> Image.Image:
        opened.append(str(path))
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image, "open", counting_open)
    vitlib.predict(_model(), paths, batch_size=4, num_workers=0)  # counted in this process
    assert sorted(opened) == sorted(map(str, paths))


def test_unreadable_images_are_named_and_skipped_or_refused_with_strict(tmp_path: Path) -> None:
    good = write_image(tmp_path / "good.png", COLOURS["red"], (20, 20), seed=0)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    missing = tmp_path / "missing.png"
    with pytest.warns(SkippedImagesWarning, match=r"skipped 2 unreadable .*broken\.jpg.*missing"):
        predictions = vitlib.predict(_model(), [broken, good, missing])
    assert [p.source for p in predictions] == [str(good)]
    with pytest.raises(DataError, match=r"cannot read image .*broken\.jpg.*--strict"):
        vitlib.predict(_model(), [good, broken], strict=True)


def test_an_image_whose_pixels_are_out_of_range_is_named_and_skipped(tmp_path: Path) -> None:
    """A 32-bit float TIFF with values of 2.0, or a 32-bit integer one above 16 bits: the file
    reads, its pixels do not; the rest of the images are still classified."""
    good = write_image(tmp_path / "good.png", COLOURS["red"], (20, 20), seed=0)
    floats = tmp_path / "float.tif"
    Image.fromarray(np.full((20, 20), 2.0, dtype=np.float32), mode="F").save(floats)
    wide = tmp_path / "wide.tif"
    Image.fromarray(np.full((20, 20), 70_000, dtype=np.int32), mode="I").save(wide)
    with pytest.warns(SkippedImagesWarning) as caught:
        predictions = vitlib.predict(_model(), [floats, good, wide])
    assert [p.source for p in predictions] == [str(good)]
    assert [image.source for image in predictions.skipped] == [str(floats), str(wide)]
    assert "values from 2 to 2" in predictions.skipped[0].reason
    assert str(floats) in str(caught[0].message)
    with pytest.raises(DataError, match=r"cannot read image .*float\.tif: .*mode 'F'"):
        vitlib.predict(_model(), [good, floats], strict=True)


def test_worker_processes_give_the_predictions_and_skips_of_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoded by 2 workers, 3 images a batch, with unreadable files inside and at the end of a
    batch: the same predictions, in input order, and the same skipped files; the decoding
    happened in other processes."""
    import importlib
    import os

    module = importlib.import_module("vitlib.inference.predict")
    decode, decoders = module._decode, tmp_path / "decoders.txt"

    def recording(path: Path, transform: object) -> object:
        with decoders.open("a", encoding="utf-8") as out:
            out.write(f"{os.getpid()}\n")
        return decode(path, transform)

    monkeypatch.setattr(module, "_decode", recording)
    paths: list[Path] = sorted(write_image_folder(tmp_path / "images", per_class=2).rglob("*.png"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    paths[1:1] = [broken]
    paths[5:5] = [tmp_path / "missing.png"]
    model = _model()
    with pytest.warns(SkippedImagesWarning):
        alone = vitlib.predict(model, paths, batch_size=3, num_workers=0)
    decoders.unlink()
    with pytest.warns(SkippedImagesWarning):
        helped = vitlib.predict(model, paths, batch_size=3, num_workers=2)
    pids = decoders.read_text(encoding="utf-8").split()
    assert len(pids) == len(paths)
    assert str(os.getpid()) not in pids
    assert len(alone) == len(paths) - 2
    assert [p.source for p in helped] == [p.source for p in alone]
    assert [p.probabilities for p in helped] == [p.probabilities for p in alone]
    assert helped.skipped == alone.skipped
    assert [image.source for image in helped.skipped] == [str(paths[1]), str(paths[5])]
    with pytest.raises(DataError, match=r"cannot read image .*broken\.jpg.*--strict"):
        vitlib.predict(model, paths, batch_size=3, num_workers=2, strict=True)


def test_workers_are_used_by_default_for_files_beyond_one_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """None asks decode_workers, which is told the number of files; inputs that are not all
    files are prepared in this process whatever is asked."""
    import importlib

    module = importlib.import_module("vitlib.inference.predict")
    from vitlib.data.loaders import decode_workers

    asked: list[tuple[int | None, int, int]] = []

    def spy(requested: int | None, images: int, batch_size: int) -> int:
        asked.append((requested, images, batch_size))
        return decode_workers(requested, images, batch_size)

    monkeypatch.setattr(module, "decode_workers", spy)
    paths = sorted(write_image_folder(tmp_path / "images", per_class=2).rglob("*.png"))
    vitlib.predict(_model(), paths, batch_size=4)
    vitlib.predict(_model(), [paths[0], Image.open(paths[1]).convert("RGB")], num_workers=2)
    assert asked == [(None, len(paths), 4), (2, 2, 32)]


def test_batches_are_stacked_into_one_reused_buffer() -> None:
    import importlib

    batched = importlib.import_module("vitlib.inference.predict")._batched
    images = [(f"image {i}", torch.full((3, 4, 4), float(i))) for i in range(7)]
    pointers, firsts = [], []
    for sources, batch in batched(iter(images), 3):
        pointers.append(batch.data_ptr())
        firsts.append((sources[0], float(batch[0, 0, 0, 0]), len(batch)))
    assert pointers[0] == pointers[1] == pointers[2]
    assert firsts == [("image 0", 0.0, 3), ("image 3", 3.0, 3), ("image 6", 6.0, 1)]


def test_top_k_larger_than_the_classes_gives_every_class(tmp_path: Path) -> None:
    (prediction,) = vitlib.predict(_model(), torch.rand(3, 16, 16), top_k=50)
    assert sorted(prediction.labels) == sorted(LABELS)
    assert sum(prediction.probabilities) == pytest.approx(1.0, abs=1e-5)


def test_a_saved_run_predicts_with_its_labels_and_restores_the_mode(tmp_path: Path) -> None:
    model = _model()
    vitlib.save_pretrained(model, tmp_path / "run" / "best")
    path = write_image(tmp_path / "a.png", COLOURS["blue"], (20, 20), seed=0)
    assert vitlib.predict(tmp_path / "run", path) == vitlib.predict(model, path)
    model.train()
    vitlib.predict(model, path)
    assert model.training


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (torch.full((3, 8, 8), 2.0), r"values outside \[0, 1\]"),
        (torch.zeros(4, 8, 8), "4 channels"),
        (torch.zeros(8, 8), "expected .C, H, W. or .B, C, H, W."),
        (torch.zeros(3, 8, 8, dtype=torch.int32), "torch.int32"),
    ],
)
def test_tensors_that_are_not_images_are_refused(image: torch.Tensor, message: str) -> None:
    with pytest.raises(DataError, match=message):
        vitlib.predict(_model(), image)


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="top_k must be an int >= 1, got 0"):
        vitlib.predict(_model(), torch.rand(3, 8, 8), top_k=0)
    with pytest.raises(
        TypeError, match=r"image 0 must be a path, a PIL image or a tensor, got 3.5"
    ):
        vitlib.predict(_model(), [3.5])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="name 2 classes"):
        vitlib.predict(_model(), torch.rand(3, 8, 8), labels=["a", "b"])
    with pytest.raises(DataError, match="no classification head"):
        vitlib.predict(tiny_vit(num_classes=0), torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="num_workers must be an int >= 0 and <= 32, got -1"):
        vitlib.predict(_model(), torch.rand(3, 8, 8), num_workers=-1)


def test_a_model_without_recorded_preprocessing_warns_what_it_assumes() -> None:
    with pytest.warns(UserWarning, match=r"records no preprocessing .*; assuming"):
        (prediction,) = vitlib.predict(tiny_vit(), torch.rand(3, 16, 16))
    assert prediction.labels[0] in {"0", "1", "2", "3", "4"}


def test_progress_shows_images_done_their_rate_and_the_time_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from vitlib.training import progress

    paths = sorted(write_image_folder(tmp_path / "images", per_class=2).rglob("*.png"))
    broken = tmp_path / "images" / "broken.png"
    broken.write_bytes(b"not an image")
    model = _model()
    with pytest.warns(SkippedImagesWarning):
        vitlib.predict(model, tmp_path / "images", batch_size=4, progress=True)
    assert capsys.readouterr().err == "", "no terminal: no bar"
    monkeypatch.setattr(progress, "is_terminal", lambda stream: True)
    with pytest.warns(SkippedImagesWarning):
        vitlib.predict(model, tmp_path / "images", batch_size=4, progress=True)
    err = capsys.readouterr().err
    assert f"{len(paths) + 1}/{len(paths) + 1}" in err, "the skipped image counts as done"
    assert "img/s" in err
    vitlib.predict(model, paths, batch_size=4)
    assert capsys.readouterr().err == "", "off by default"


def test_iter_predict_streams_the_predictions_of_predict_batch_by_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same predictions and skipped files; a batch is classified only when the previous
    one has been taken (nothing is kept), and bad arguments fail at the call."""
    import importlib

    from vitlib.inference import iter_predict

    paths: list[Path] = sorted(write_image_folder(tmp_path / "images", per_class=2).rglob("*.png"))
    paths.insert(3, tmp_path / "missing.png")
    model = _model()
    with pytest.warns(SkippedImagesWarning):
        whole = vitlib.predict(model, paths, batch_size=2, num_workers=0)
    module = importlib.import_module("vitlib.inference.predict")
    classify, batches = module._classify, []

    def counting(*args: object) -> object:
        batches.append(1)
        return classify(*args)

    monkeypatch.setattr(module, "_classify", counting)
    stream = iter_predict(model, paths, batch_size=2, num_workers=0)
    assert batches == []
    first = next(stream)
    assert len(batches) == 1
    rest = list(stream)
    assert len(batches) == 3
    assert [p.probabilities for p in [first, *rest]] == [p.probabilities for p in whole]
    assert stream.skipped == whole.skipped
    assert stream.preprocessing == whole.preprocessing
    with pytest.raises(ValueError, match="top_k must be an int >= 1"):
        iter_predict(model, paths, top_k=0)  # at the call, not at the first image
