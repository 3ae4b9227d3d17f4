"""ImageFolderDataset and load_image_folders: the root/<class>/<image> layout and its errors."""

from __future__ import annotations

import io
import re
import sys
import warnings
from collections.abc import Sized
from pathlib import Path
from typing import cast

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from torch.utils.data import Subset

from vitlib.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageFolderDataset,
    Preprocessing,
    SkippedImagesWarning,
    load_image_folders,
)
from vitlib.data.image_folder import load_image_splits
from vitlib.data.preprocessing import PreprocessTransform, TrainTransform
from vitlib.errors import DataError

from .helpers import unreadable
from .image_helpers import write_image_folder
from .test_data_transforms import oriented_jpeg

CLASSES = ["basketball", "cricket", "tennis"]


def write_image(path: Path, size: tuple[int, int] = (20, 16), mode: str = "RGB") -> Path:
    """Save a small image, format from the suffix, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    colours: dict[str, float | tuple[float, ...]] = {
        "RGB": (200, 30, 90),
        "L": 128,
        "RGBA": (10, 20, 30, 255),
        "P": 3,
    }
    colour = colours[mode]
    Image.new(mode, size, colour).save(path)
    return path


def make_split(root: Path, classes: list[str] = CLASSES, per_class: int = 2) -> Path:
    """root/<class>/<n>.png and .jpg: a tiny Sports-Mini-like split."""
    for name in classes:
        for index in range(per_class):
            suffix = ".png" if index % 2 == 0 else ".jpg"
            write_image(root / name / f"{index}{suffix}")
    return root


@pytest.fixture
def split_root(tmp_path: Path) -> Path:
    return make_split(tmp_path / "train")


def test_classes_samples_and_targets(split_root: Path) -> None:
    dataset = ImageFolderDataset(split_root)
    assert dataset.classes == CLASSES
    assert dataset.class_to_idx == {"basketball": 0, "cricket": 1, "tennis": 2}
    assert len(dataset) == 6
    assert dataset.targets == [0, 0, 1, 1, 2, 2]
    assert [(path.parent.name, label) for path, label in dataset.samples] == [
        (CLASSES[label], label) for label in dataset.targets
    ]


def test_default_item_is_the_rgb_image_in_unit_range(split_root: Path) -> None:
    image, label = ImageFolderDataset(split_root)[0]
    assert image.shape == (3, 16, 20)
    assert image.dtype == torch.float32
    assert 0.0 <= image.min() <= image.max() <= 1.0
    assert label == 0


def test_transform_is_applied(split_root: Path) -> None:
    image, _ = ImageFolderDataset(split_root, Preprocessing((8, 8)).transform())[3]
    assert image.shape == (3, 8, 8)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_images_are_converted_to_rgb(tmp_path: Path, mode: str) -> None:
    write_image(tmp_path / "only" / "a.png", mode=mode)
    dataset = ImageFolderDataset(tmp_path)
    assert dataset.load_image(0).mode == "RGB"
    assert dataset[0][0].shape[0] == 3


def test_extensions_are_case_insensitive_and_others_ignored(tmp_path: Path) -> None:
    for name in ["a.JPG", "b.Jpeg", "c.png", "d.bmp", "e.gif", "f.webp", "g.TIF", "h.tiff"]:
        write_image(tmp_path / "cls" / name)
    (tmp_path / "cls" / "notes.txt").write_text("not an image")
    (tmp_path / "cls" / "README").write_text("no suffix")
    dataset = ImageFolderDataset(tmp_path)
    assert len(dataset) == 8


def test_hidden_folders_are_neither_classes_nor_images(tmp_path: Path) -> None:
    make_split(tmp_path, ["a", "b"], per_class=1)
    write_image(tmp_path / ".ipynb_checkpoints" / "x.png")
    write_image(tmp_path / "a" / ".cache" / "y.png")
    dataset = ImageFolderDataset(tmp_path)
    assert dataset.classes == ["a", "b"]
    assert len(dataset) == 2


def test_images_in_nested_folders_count_for_their_class(tmp_path: Path) -> None:
    write_image(tmp_path / "a" / "sub" / "deep.png")
    write_image(tmp_path / "b" / "top.png")
    assert ImageFolderDataset(tmp_path).targets == [0, 1]


def test_an_unreadable_image_is_skipped_with_one_warning(split_root: Path) -> None:
    broken = split_root / "cricket" / "broken.jpg"
    broken.write_bytes(b"this is not a JPEG")
    with pytest.warns(SkippedImagesWarning, match=r"skipped 1 unreadable") as record:
        dataset = ImageFolderDataset(split_root)
    assert len(record) == 1
    assert f"{broken} (UnidentifiedImageError: " in str(record[0].message)
    assert "strict=True" in str(record[0].message)
    assert len(dataset) == 6
    assert broken not in [path for path, _ in dataset.samples]


def test_many_unreadable_images_give_one_warning_naming_three(split_root: Path) -> None:
    for index in range(5):
        (split_root / "tennis" / f"bad{index}.png").write_bytes(b"")
    with pytest.warns(SkippedImagesWarning, match=r"skipped 5 .* and 2 more") as record:
        ImageFolderDataset(split_root)
    assert len(record) == 1


def test_skipped_images_warning_is_a_user_warning() -> None:
    assert issubclass(SkippedImagesWarning, UserWarning)


def test_strict_raises_naming_the_unreadable_image(split_root: Path) -> None:
    broken = split_root / "cricket" / "broken.png"
    broken.write_bytes(b"\x89PNG but truncated")
    with pytest.raises(ValueError, match=r"unreadable image .*broken\.png.*strict=False"):
        ImageFolderDataset(split_root, strict=True)


def test_a_clean_folder_raises_no_warning(split_root: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ImageFolderDataset(split_root, strict=True)


def test_an_image_that_fails_to_decode_on_load_names_the_file(tmp_path: Path) -> None:
    """Half a JPEG passes the cheap header check but fails when its pixels are decoded."""
    noise = torch.randint(0, 256, (64, 64, 3), generator=torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    Image.fromarray(noise.to(torch.uint8).numpy()).save(buffer, "JPEG")
    truncated = tmp_path / "cls" / "half.jpg"
    truncated.parent.mkdir()
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    dataset = ImageFolderDataset(tmp_path)
    with pytest.raises(OSError, match=r"cannot decode image .*half\.jpg"):
        dataset[0]


def test_missing_root_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(
        FileNotFoundError, match=rf"{re.escape(str(missing))} does not exist; point it at"
    ):
        ImageFolderDataset(missing)


def test_a_file_as_root_is_refused(tmp_path: Path) -> None:
    file = write_image(tmp_path / "image.png")
    with pytest.raises(
        NotADirectoryError, match=rf"{re.escape(str(file))} is a file, expected a folder"
    ):
        ImageFolderDataset(file)


def test_a_root_without_class_folders_is_refused(tmp_path: Path) -> None:
    write_image(tmp_path / "loose.png")
    with pytest.raises(
        ValueError, match=rf"no class folders in {re.escape(str(tmp_path))}; .*<class_name>"
    ):
        ImageFolderDataset(tmp_path)


def test_class_folders_without_any_image_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "labels.csv").write_text("x")
    with pytest.raises(
        ValueError, match=rf"no images in {re.escape(str(tmp_path))}: .*\['a', 'b'\].*\.jpg"
    ):
        ImageFolderDataset(tmp_path)


def test_an_empty_class_folder_is_refused_by_name(split_root: Path) -> None:
    (split_root / "archery").mkdir()
    with pytest.raises(
        ValueError, match=r"class folder .*archery has no images; add images ending in"
    ):
        ImageFolderDataset(split_root)


@pytest.mark.parametrize("depth", ["class", "nested"])
def test_a_folder_that_may_not_be_listed_says_permission_denied(
    shared_tmp: Path, depth: str
) -> None:
    root = write_image_folder(shared_tmp / "data", per_class=1)
    locked = root / "red"
    if depth == "nested":
        locked = locked / "more"
        write_image(locked / "0.png")
    with unreadable(locked), pytest.raises(PermissionError) as caught:
        ImageFolderDataset(root)
    assert f"permission denied listing the folder {locked}" in str(caught.value)


def test_a_class_with_only_unreadable_images_is_refused(split_root: Path) -> None:
    (split_root / "archery").mkdir()
    (split_root / "archery" / "bad.jpg").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"archery has no readable images \(1 unreadable\)"):
        ImageFolderDataset(split_root)


def test_load_image_folders_uses_train_and_eval_transforms(tmp_path: Path) -> None:
    make_split(tmp_path / "train")
    make_split(tmp_path / "test", per_class=1)
    train, test = load_image_folders(tmp_path, image_size=12)
    assert isinstance(train.transform, TrainTransform)
    assert isinstance(test.transform, PreprocessTransform)
    assert (len(train), len(test)) == (6, 3)
    assert train.classes == test.classes == CLASSES
    assert train[0][0].shape == test[0][0].shape == (3, 12, 12)


@pytest.mark.parametrize("missing", ["train", "test"])
def test_a_missing_split_folder_names_the_expected_layout(tmp_path: Path, missing: str) -> None:
    for split in {"train", "test"} - {missing}:
        make_split(tmp_path / split)
    with pytest.raises(FileNotFoundError, match=rf"no {missing}/ folder in .*data_dir/train/"):
        load_image_folders(tmp_path)


def test_a_missing_data_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"does not exist; create it with the layout"):
        load_image_folders(tmp_path / "sports")


def test_a_file_as_data_dir_is_refused(tmp_path: Path) -> None:
    file = write_image(tmp_path / "sports.png")
    with pytest.raises(NotADirectoryError, match=rf"{re.escape(str(file))} is a file"):
        load_image_folders(file)


def test_different_class_sets_are_refused_naming_both_sides(tmp_path: Path) -> None:
    make_split(tmp_path / "train", ["archery", "boxing", "golf"], per_class=1)
    make_split(tmp_path / "test", ["boxing", "golf", "rugby"], per_class=1)
    with pytest.raises(
        ValueError, match=r"only in train/: \['archery'\], only in test/: \['rugby'\]"
    ):
        load_image_folders(tmp_path)


def test_missing_pillow_names_the_extra(split_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(ImportError, match=r'pip install "vitlib\[data\]"'):
        ImageFolderDataset(split_root)


# --- 16-bit and float images (D10) -------------------------------------------------------------


def test_a_sixteen_bit_image_keeps_its_precision_through_the_dataset(tmp_path: Path) -> None:
    """Half grey in a 16-bit PNG used to be converted to 8-bit RGB on load: white."""
    path = tmp_path / "cls" / "grey16.png"
    path.parent.mkdir()
    Image.fromarray(np.full((16, 20), 32768, dtype=np.uint16)).save(path)
    dataset = ImageFolderDataset(tmp_path)
    assert dataset.load_image(0).mode == "I;16"
    image, _ = dataset[0]
    assert image.shape == (3, 16, 20)
    assert torch.allclose(image, torch.full_like(image, 0.5), atol=1e-4)


def test_sixteen_bit_images_reach_the_split_transforms_unclipped(tmp_path: Path) -> None:
    for split in ("train", "test"):
        path = tmp_path / split / "cls" / "grey16.png"
        path.parent.mkdir(parents=True)
        Image.fromarray(np.full((40, 40), 32768, dtype=np.uint16)).save(path)
    train, test = load_image_folders(tmp_path, image_size=8)
    pairs = zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)
    expected = torch.tensor([(0.5 - mean) / std for mean, std in pairs])
    for dataset in (train, test):
        image, _ = dataset[0]
        assert torch.allclose(image, expected.view(3, 1, 1).expand(3, 8, 8), atol=1e-3)


def test_a_float_image_outside_the_unit_interval_is_refused_naming_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cls" / "depth.tif"
    path.parent.mkdir()
    Image.fromarray(np.full((4, 4), 3.0, dtype=np.float32)).save(path)
    dataset = ImageFolderDataset(tmp_path)
    assert dataset.load_image(0).mode == "F"
    with pytest.raises(DataError, match=rf"image {re.escape(str(path))}: .*mode 'F'.*\[0, 1\]"):
        dataset[0]


# --- EXIF orientation (D11) --------------------------------------------------------------------


def write_oriented_jpeg(path: Path, orientation: int = 6) -> Path:
    """:func:`oriented_jpeg` in a class folder that is created if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return oriented_jpeg(path, orientation)


def test_load_image_turns_a_photo_upright_by_its_exif_orientation(tmp_path: Path) -> None:
    write_oriented_jpeg(tmp_path / "cls" / "photo.jpg")
    dataset = ImageFolderDataset(tmp_path)
    image = dataset.load_image(0)
    assert image.size == (20, 40)
    assert image.getpixel((10, 5))[0] > 200  # type: ignore[index]
    assert image.getpixel((10, 35))[2] > 200  # type: ignore[index]


@pytest.mark.parametrize("with_transform", [False, True])
def test_a_dataset_item_is_turned_upright_exactly_once(
    tmp_path: Path, with_transform: bool
) -> None:
    """Turned twice, orientation 6 would give a 180-degree turn: 20 wide, red at the bottom."""
    write_oriented_jpeg(tmp_path / "cls" / "photo.jpg")
    transform = Preprocessing((20, 20), crop_ratio=1.0, mean=(0, 0, 0), std=(1, 1, 1)).transform()
    dataset = ImageFolderDataset(tmp_path, transform if with_transform else None)
    image, _ = dataset[0]
    if not with_transform:
        assert image.shape == (3, 40, 20)
    top, bottom = image[:, : image.shape[1] // 3], image[:, -image.shape[1] // 3 :]
    assert top[0].mean() > 0.9 > 0.1 > top[2].mean()
    assert bottom[2].mean() > 0.9 > 0.1 > bottom[0].mean()


# --- decompression bombs (D09b) and skip reasons (D09) -----------------------------------------


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any image's pixels are decoded: bombs must be refused from the header."""

    def refuse(self: ImageFile.ImageFile) -> None:
        raise AssertionError(f"decoded {self.size} pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.usefixtures("no_decoding")
def test_a_real_decompression_bomb_below_pillows_error_limit_is_skipped(
    split_root: Path,
) -> None:
    """The D09b file: 144 Mpx, about 17 KB, which Pillow only warns about, then decodes (3 GB)."""
    bomb = split_root / "tennis" / "bomb.png"
    Image.new("1", (12000, 12000)).save(bomb)
    assert bomb.stat().st_size < 100_000
    assert Image.MAX_IMAGE_PIXELS is not None
    assert Image.MAX_IMAGE_PIXELS < 144_000_000 <= 2 * Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        dataset = ImageFolderDataset(split_root)
    assert [warning.category for warning in record] == [SkippedImagesWarning]
    assert re.search(
        rf"{re.escape(str(bomb))} \(decompression bomb: Image size \(144000000 pixels\) exceeds",
        str(record[0].message),
    )
    assert bomb not in [path for path, _ in dataset.samples]


@pytest.mark.usefixtures("no_decoding")
@pytest.mark.parametrize("limit", [1000, 500], ids=["pillow-warns", "pillow-raises"])
def test_an_image_over_max_image_pixels_is_skipped_with_the_reason(
    split_root: Path, monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    """40 x 40 = 1600 pixels: over 1000 Pillow only warns, over 2 x 500 it raises itself."""
    bomb = write_image(split_root / "cricket" / "bomb.png", size=(40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.warns(SkippedImagesWarning, match=r"skipped 1 unreadable") as record:
        dataset = ImageFolderDataset(split_root)
    assert re.search(
        rf"{re.escape(str(bomb))} \(decompression bomb: Image size \(1600 pixels\) exceeds limit "
        rf"of {limit if limit == 1000 else 2 * limit} pixels\)",
        str(record[0].message),
    )
    assert bomb not in [path for path, _ in dataset.samples]


@pytest.mark.usefixtures("no_decoding")
def test_strict_raises_on_a_decompression_bomb_with_the_fix(
    split_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_image(split_root / "cricket" / "bomb.png", size=(40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(
        DataError,
        match=r"unreadable image .*bomb\.png: decompression bomb: .*1600 pixels.*; delete or "
        r"replace the file \(or, if the image is genuine, raise PIL\.Image\.MAX_IMAGE_PIXELS\)",
    ):
        ImageFolderDataset(split_root, strict=True)


def test_a_bomb_that_reaches_load_image_is_refused_naming_the_file(
    split_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """E.g. the file was replaced, or the limit lowered, after the dataset was built."""
    dataset = ImageFolderDataset(split_root, Preprocessing((8, 8)).transform())
    path = dataset.samples[0][0]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)
    with pytest.raises(
        OSError,
        match=rf"cannot decode image {re.escape(str(path))}: decompression bomb: Image size "
        r"\(320 pixels\) exceeds limit of 200 pixels; delete or replace the file \(or, if",
    ):
        dataset[0]


def test_max_image_pixels_none_lets_large_images_in(
    split_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented way to accept genuine huge images: Pillow's own setting, not a new one."""
    big = write_image(split_root / "cricket" / "big.png", size=(40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = ImageFolderDataset(split_root, strict=True)
        index = [path for path, _ in dataset.samples].index(big)
        assert dataset[index][0].shape == (3, 40, 40)


def test_the_bomb_check_leaves_pillow_and_warning_filters_alone(split_root: Path) -> None:
    write_image(split_root / "cricket" / "big.png", size=(40, 40))
    limit, filters = Image.MAX_IMAGE_PIXELS, list(warnings.filters)
    ImageFolderDataset(split_root)[0]
    assert (Image.MAX_IMAGE_PIXELS, warnings.filters) == (limit, filters)


def test_the_skip_warning_says_why_each_named_file_is_unreadable(split_root: Path) -> None:
    (split_root / "cricket" / "empty.png").write_bytes(b"")
    (split_root / "tennis" / "text.jpg").write_text("hello")
    with pytest.warns(SkippedImagesWarning) as record:
        ImageFolderDataset(split_root)
    message = str(record[0].message)
    for name in ("empty.png", "text.jpg"):
        assert f"{name} (UnidentifiedImageError: cannot identify image file)" in message


def test_load_image_folders_prepare_both_splits_by_the_preprocessing_given(
    tmp_path: Path,
) -> None:
    for split in ("train", "test"):
        write_image_folder(tmp_path / split, per_class=1)
    spec = Preprocessing((8, 12), mean=(0.5,) * 3, std=(0.25,) * 3, crop_ratio=1.0)
    train, test = load_image_folders(tmp_path, spec)
    assert test.transform == spec.transform()
    assert isinstance(train.transform, TrainTransform)
    assert train.transform.preprocessing == spec
    assert train[0][0].shape == test[0][0].shape == (3, 8, 12)


def test_a_symbolic_link_that_leads_nowhere_is_named_as_one(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to(loop)  # a link to itself
    with pytest.raises(FileNotFoundError, match="is a symbolic link that leads nowhere"):
        ImageFolderDataset(loop)
    root = write_image_folder(tmp_path / "data", per_class=2)
    (root / "red" / "gone.png").symlink_to(tmp_path / "deleted.png")
    with pytest.warns(SkippedImagesWarning, match=r"gone\.png \(the file is a symbolic link"):
        ImageFolderDataset(root)


def _size(dataset: object) -> int:
    return len(cast("Sized", dataset))


def _splits_root(root: Path, *, train: int = 4, valid: str | None = None) -> Path:
    for split, count in (("train", train), ("test", 2)):
        write_image_folder(root / split, per_class=count)
    if valid is not None:
        write_image_folder(root / valid, per_class=1, seed=7)
    return root


@pytest.mark.parametrize("name", ["valid", "val"])
def test_a_validation_folder_is_the_validation_split(tmp_path: Path, name: str) -> None:
    splits = load_image_splits(_splits_root(tmp_path, valid=name), Preprocessing.imagenet(8))
    assert splits.val_folder == tmp_path / name
    assert splits.held_out == ()
    assert isinstance(splits.train, ImageFolderDataset)
    assert len(splits.train) == 12
    assert isinstance(splits.val, ImageFolderDataset)
    assert len(splits.val) == 3
    assert isinstance(splits.val.transform, PreprocessTransform), "prepared as the test images"


def test_without_one_a_share_of_train_is_held_out_and_prepared_as_the_test_images(
    tmp_path: Path,
) -> None:
    root = _splits_root(tmp_path, train=10)
    splits = load_image_splits(root, Preprocessing.imagenet(8), val_split=0.2, seed=3)
    assert (_size(splits.train), _size(splits.val)) == (24, 6)
    assert splits.val_folder == root / "train"
    assert len(splits.held_out) == 6
    assert splits.val is not None
    image, label = splits.val[0]
    name = splits.held_out[0]
    expected = Preprocessing.imagenet(8).transform()(Image.open(root / "train" / name))
    assert torch.equal(image, expected), "no augmentation on validation images"
    assert splits.classes[label] == name.split("/")[0]
    assert isinstance(splits.train, Subset)
    assert isinstance(splits.train.dataset, ImageFolderDataset)
    assert isinstance(splits.train.dataset.transform, TrainTransform)
    again = load_image_splits(root, Preprocessing.imagenet(8), held_out=splits.held_out)
    assert again.held_out == splits.held_out, "the split a resumed run names"


def test_val_split_0_holds_nothing_out(tmp_path: Path) -> None:
    splits = load_image_splits(_splits_root(tmp_path), val_split=0, image_size=8)
    assert (splits.val, splits.val_folder, _size(splits.train)) == (None, None, 12)


def test_held_out_files_that_are_gone_are_named(tmp_path: Path) -> None:
    root = _splits_root(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"1 of the 2 validation images .* \['red/9.png'\]"):
        load_image_splits(root, image_size=8, held_out=["red/0.png", "red/9.png"])


def test_both_valid_and_val_are_refused(tmp_path: Path) -> None:
    root = _splits_root(tmp_path, valid="valid")
    write_image_folder(root / "val", per_class=1)
    with pytest.raises(DataError, match=r"holds both valid/ and val/; expected at most one"):
        load_image_splits(root, image_size=8)


def test_a_validation_folder_with_other_classes_is_refused(tmp_path: Path) -> None:
    root = _splits_root(tmp_path, valid="valid")
    (root / "valid" / "blue").rename(root / "valid" / "purple")
    with pytest.raises(DataError, match=r"train and valid class folders differ .*only in valid/: "):
        load_image_splits(root, image_size=8)
