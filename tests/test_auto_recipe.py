"""The recipe `vitlib train --data FOLDER` chooses from the folder: its rules, its checks, its
explanation, and the command using it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from vitlib.cli.main import main
from vitlib.counting import count_flops
from vitlib.errors import ConfigError, DataError, InputTypeError
from vitlib.training.auto_recipe import (
    BATCH_SIZES,
    DEFAULT_CROP_SCALE,
    EPOCH_RANGE,
    GRID_RANGE,
    IMAGE_SIZE_RANGE,
    MAX_TRAINING_FLOPS,
    MIN_STEPS_PER_EPOCH,
    TARGET_STEPS,
    FolderStats,
    choose_recipe,
    read_folder_stats,
)

from .image_helpers import write_image_folder


def stats(
    sizes: list[tuple[int, int]] | None = None, per_class: int = 100, classes: int = 4
) -> FolderStats:
    return FolderStats(classes, (per_class,) * classes, tuple(sizes or [(128, 96)] * 10))


# --- FolderStats and read_folder_stats ----------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ((0, (1,), ((8, 8),)), ConfigError, "num_classes must be an int >= 1, got 0"),
        ((2, (1,), ((8, 8),)), ConfigError, "one count per class (2), got 1"),
        ((2, (0, 0), ((8, 8),)), ConfigError, "at least one image, got only zeros"),
        ((1, (1,), ()), ConfigError, "at least one (width, height) pair"),
        ((1, (1,), ((8, 0),)), ConfigError, "an image height must be an int >= 1, got 0"),
        ((1, (1,), ((8, 8, 8),)), ConfigError, "must be a (width, height) pair"),
        ((1, 3, ((8, 8),)), InputTypeError, "images_per_class"),
        ((1, (1.5,), ((8, 8),)), InputTypeError, "each of images_per_class"),
    ],
)
def test_folder_stats_refuse_what_no_folder_has(
    arguments: tuple[object, ...], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        FolderStats(*arguments)  # type: ignore[arg-type]


def test_read_folder_stats_counts_and_reads_headers_upright(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "train", per_class=3)
    samples = sorted((str(path), index) for index, path in enumerate(sorted(root.iterdir())))
    files = [(p, label) for folder, label in samples for p in sorted(Path(folder).iterdir())]
    turned = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: stored 40x10, shown 10x40
    Image.new("RGB", (40, 10)).save(turned, exif=exif)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    result = read_folder_stats([*files, (turned, 0), (broken, 1)], 3)
    assert result.images_per_class == (4, 4, 3)
    assert (10, 40) in result.image_sizes, "the EXIF orientation swaps width and height"
    assert len(result.image_sizes) == len(files) + 1, "the unreadable file is left out"
    assert (20, 18) in result.image_sizes  # write_image_folder's first image


def test_read_folder_stats_samples_every_class(tmp_path: Path) -> None:
    files = []
    for label, side in enumerate((20, 30, 40)):
        for index in range(10):
            path = tmp_path / f"{label}-{index}.png"
            Image.new("RGB", (side, side)).save(path)
            files.append((path, label))
    result = read_folder_stats(files, 3, max_headers=3)
    assert sorted(result.image_sizes) == [(20, 20), (30, 30), (40, 40)]


@pytest.mark.parametrize(
    ("samples", "classes", "error", "message"),
    [
        ([], 2, DataError, "samples is empty"),
        ([("a.png", 2)], 2, DataError, r"label 2; expected an int in \[0, 2\)"),
        ([("a.png", True)], 2, DataError, "label True"),
        ([("a.png",)], 2, DataError, r"a \(path, label\) pair, got \('a.png',\)"),
        ("train", 2, InputTypeError, "samples"),
        ([("a.png", 0)], 0, ConfigError, "num_classes must be an int >= 1"),
    ],
)
def test_read_folder_stats_refuses_bad_samples(
    samples: object, classes: int, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        read_folder_stats(samples, classes)  # type: ignore[arg-type]


def test_read_folder_stats_says_when_no_header_is_readable(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match="has a header Pillow can read"):
        read_folder_stats([(tmp_path / "a.jpg", 0)], 1)


# --- the rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sides", "image_size"),
    [
        ([(64, 200)] * 6 + [(200, 200)] * 4, 64),  # most images are 64 px short
        ([(100, 150)] * 10, 96),  # rounded down to a multiple of 16, within the range
        ([(20, 20)] * 10, IMAGE_SIZE_RANGE[0]),  # never below the range
        ([(3000, 2000)] * 10, IMAGE_SIZE_RANGE[1]),  # camera photos: the top of the range
        ([(50, 50)] * 5 + [(100, 100)] * 6, 96),  # the median
        ([(50, 50)] * 6 + [(100, 100)] * 5, 48),  # the median
    ],
)
def test_the_input_size_follows_the_shorter_sides(
    sides: list[tuple[int, int]], image_size: int
) -> None:
    recipe = choose_recipe(stats(sides))
    assert recipe.image_size == image_size
    assert recipe.grid == 8
    assert recipe.preset == f"ViT-Ti/{image_size // 8}"
    assert recipe.layers == 6


def test_a_given_preset_keeps_its_patch_and_depth() -> None:
    recipe = choose_recipe(stats([(64, 64)] * 4), preset="ViT-S/16")
    assert (recipe.preset, recipe.image_size, recipe.layers) == ("ViT-S/16", 128, 12)
    assert recipe.grid == GRID_RANGE[0], "64 px would be a 4x4 grid: raised to the smallest"
    assert "ViT-S/16 (given) with 12 layers at 128 px" in recipe.explanation
    sized = choose_recipe(stats(), preset="ViT-Ti/8", image_size=96, layers=3)
    assert (sized.image_size, sized.layers, sized.grid) == (96, 3, 12)


def test_a_given_image_size_gets_the_grid_nearest_eight() -> None:
    assert choose_recipe(stats(), image_size=224).preset == "ViT-Ti/28"
    assert choose_recipe(stats(), image_size=120).grid == 8
    assert choose_recipe(stats(), image_size=99).grid == 9
    with pytest.raises(ConfigError, match=r"image_size 97 cannot be cut into a grid of 8x8"):
        choose_recipe(stats(), image_size=97)
    with pytest.raises(ConfigError, match="not divisible by the patch size 16 of preset"):
        choose_recipe(stats(), preset="ViT-Ti/16", image_size=100)


@pytest.mark.parametrize(
    ("images", "batch_size"), [(400, 32), (100, 8), (1000, 64), (130, 16), (5, 5)]
)
def test_the_batch_leaves_enough_steps_an_epoch(images: int, batch_size: int) -> None:
    recipe = choose_recipe(FolderStats(1, (images,), ((64, 64),)))
    assert recipe.batch_size == batch_size
    assert recipe.steps_per_epoch == math.ceil(images / batch_size)


def test_the_length_aims_at_the_target_steps_within_the_epoch_range() -> None:
    recipe = choose_recipe(stats([(64, 64)], per_class=100))  # 400 images: 13 steps an epoch
    per_run = 3 * count_flops(recipe.config(num_classes=4)) * 400
    assert recipe.epochs == min(math.ceil(TARGET_STEPS / 13), int(MAX_TRAINING_FLOPS // per_run))
    assert recipe.warmup_steps == round(0.1 * recipe.total_steps)
    tiny = choose_recipe(FolderStats(2, (3, 3), ((64, 64),)))
    assert tiny.epochs == EPOCH_RANGE[1]
    big = choose_recipe(FolderStats(2, (20_000, 20_000), ((64, 64),)))
    assert big.epochs >= 1
    assert big.training_flops(40_000) <= MAX_TRAINING_FLOPS


def test_a_large_model_on_large_data_stops_within_the_first_epoch() -> None:
    recipe = choose_recipe(
        FolderStats(2, (50_000, 50_000), ((640, 480),)), preset="ViT-B/16", image_size=224
    )
    assert recipe.epochs == 1
    assert recipe.max_steps is not None
    per_step = 3 * count_flops(recipe.config(num_classes=2)) * recipe.batch_size
    assert recipe.max_steps == int(MAX_TRAINING_FLOPS // per_step)
    assert f"(max_steps {recipe.max_steps})" in recipe.explanation


def test_the_crops_keep_the_object_and_the_images_shape() -> None:
    recipe = choose_recipe(stats([(300, 100)] * 10 + [(100, 100)] * 10))
    assert recipe.crop_scale == DEFAULT_CROP_SCALE
    assert recipe.crop_aspect == (0.75, 3.0), "widened to the widest images' 3:1"
    assert recipe.resize == "squash"
    assert recipe.crop_ratio == 1.0
    assert "test images squashed whole" in recipe.explanation


def test_given_choices_are_kept_and_marked() -> None:
    recipe = choose_recipe(
        stats(),
        epochs=3,
        batch_size=10,
        lr=0.01,
        warmup_steps=0,
        crop_scale=(0.5, 1.0),
        crop_aspect=(1.0, 1.0),
        resize="center_crop",
        crop_ratio=0.875,
        max_steps=20,
    )
    assert (recipe.epochs, recipe.batch_size, recipe.lr, recipe.warmup_steps) == (3, 10, 0.01, 0)
    assert recipe.total_steps == 20
    assert recipe.given == {
        "epochs",
        "batch_size",
        "lr",
        "warmup_steps",
        "crop_scale",
        "crop_aspect",
        "resize",
        "crop_ratio",
        "max_steps",
    }
    for words in (
        "3 epochs (given)",
        "batch 10 (given)",
        "lr 0.01 (given)",
        "warmup 0 steps (given)",
        "50%-100% of the image (given)",
        "centre-cropped to 0.875 of the resized image (given)",
    ):
        assert words in recipe.explanation
    assert "(given)" not in choose_recipe(stats()).explanation


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"stats": "folder"}, InputTypeError, "stats"),
        ({"lr": 0}, ConfigError, "lr must be"),
        ({"batch_size": 401}, ConfigError, "the folder has 400 training images"),
        ({"crop_scale": (0.5, 0.2)}, ConfigError, r"0 < low <= high <= 1"),
        ({"crop_scale": (0.5,)}, ConfigError, r"a pair \(low, high\)"),
        ({"crop_aspect": (0, 1)}, ConfigError, "each of crop_aspect"),
        ({"resize": "crop"}, ConfigError, "resize"),
        ({"crop_ratio": 0.05}, ConfigError, "crop_ratio"),
        ({"epochs": 0}, ConfigError, "epochs must be an int >= 1"),
        ({"max_steps": 0}, ConfigError, "max_steps must be an int >= 1"),
        ({"layers": 0}, ConfigError, "layers must be an int >= 1"),
    ],
)
def test_choose_recipe_refuses_bad_choices(
    arguments: dict[str, object], error: type[Exception], message: str
) -> None:
    folder = arguments.pop("stats", stats())
    with pytest.raises(error, match=message):
        choose_recipe(folder, **arguments)  # type: ignore[arg-type]


@given(
    classes=st.integers(1, 20),
    per_class=st.integers(1, 3000),
    sides=st.lists(st.tuples(st.integers(8, 5000), st.integers(8, 5000)), min_size=1, max_size=8),
)
def test_every_chosen_recipe_is_consistent(
    classes: int, per_class: int, sides: list[tuple[int, int]]
) -> None:
    folder = FolderStats(classes, (per_class,) * classes, tuple(sides))
    recipe = choose_recipe(folder)
    low, high = GRID_RANGE
    assert recipe.image_size % recipe.patch_size == 0
    assert low <= recipe.grid <= high
    assert IMAGE_SIZE_RANGE[0] <= recipe.image_size <= IMAGE_SIZE_RANGE[1]
    assert recipe.batch_size in (*BATCH_SIZES, folder.train_images)
    assert recipe.batch_size <= folder.train_images
    if folder.train_images >= BATCH_SIZES[1] * MIN_STEPS_PER_EPOCH:
        assert recipe.steps_per_epoch >= MIN_STEPS_PER_EPOCH
    assert 1 <= recipe.epochs <= EPOCH_RANGE[1]
    assert recipe.training_flops(folder.train_images) <= MAX_TRAINING_FLOPS
    assert 1 <= recipe.warmup_steps < recipe.total_steps or recipe.total_steps == 1
    assert recipe.explanation.startswith(f"chose {recipe.preset} with {recipe.layers} layers")


# --- the command ---------------------------------------------------------------------------


def test_train_on_a_folder_prints_and_saves_the_recipe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    write_image_folder(data / "train", per_class=6)
    write_image_folder(data / "test", per_class=2, seed=5)
    run = tmp_path / "run"
    argv = ["train", "--data", str(data), "--layers", "1", "--epochs", "1", "--no-progress"]
    assert main([*argv, "--output-dir", str(run)]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("recipe: chose"))
    assert "ViT-Ti/4 with 1 layers (given) at 32 px (a 8x8 grid" in line
    assert "1 epochs (given)" in line
    settings = json.loads((run / "settings.json").read_text())
    assert settings["--image-size"] == 32
    assert settings["--preset"] == "ViT-Ti/4"
    assert settings["--resize"] == "squash"
    assert settings["--crop-scale"] == [0.35, 1.0]
    assert settings["--batch-size"] == 8, "15 training images (10% held out): the smallest batch"
    assert "recipe_note" not in json.dumps(settings)


def test_train_flags_override_the_recipe_in_flag_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    write_image_folder(data / "train", per_class=4)
    write_image_folder(data / "test", per_class=2, seed=5)
    assert main(["train", "--data", str(data), "--image-size", "97", "--epochs", "1"]) == 2
    error = capsys.readouterr().err
    assert "--image-size 97 cannot be cut into a grid of 8x8" in error
    argv = ["train", "--data", str(data), "--crop-scale", "0.9", "0.2"]
    assert main(argv) == 2
    assert "--crop-scale 0.9 0.2: LOW is above HIGH" in capsys.readouterr().err


def test_the_digits_refuse_the_folder_crop_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--crop-scale", "0.5", "1", "--epochs", "1"]) == 2
    assert "--crop-scale and --crop-aspect shape the training crops" in capsys.readouterr().err


def test_a_resumed_run_keeps_the_recipe_it_was_made_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The warmup is a tenth of the run's steps: a resume with more epochs would change it,
    and with it the run, if the recipe were chosen again."""
    data = tmp_path / "data"
    write_image_folder(data / "train", per_class=6)
    write_image_folder(data / "test", per_class=2, seed=5)
    run = tmp_path / "run"
    argv = [
        "train",
        "--data",
        str(data),
        "--layers",
        "1",
        "--no-progress",
        "--output-dir",
        str(run),
    ]
    assert main([*argv, "--epochs", "1"]) == 0
    made = json.loads((run / "settings.json").read_text())
    capsys.readouterr()
    assert main([*argv, "--epochs", "2", "--resume"]) == 0
    assert f"recipe: as the run made it ({run / 'settings.json'})" in capsys.readouterr().out
    resumed = json.loads((run / "settings.json").read_text())
    for flag in ("--warmup-steps", "--lr", "--batch-size", "--image-size", "--crop-aspect"):
        assert resumed[flag] == made[flag]
