"""A JPEG is decoded at the scale its preprocessing needs (Pillow's draft mode): never smaller
than what the resize makes of it, upright, and close to the full decode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vitlib.data import ImageFolderDataset, Preprocessing
from vitlib.data.image_folder import open_image

SQUASH = Preprocessing((224, 224), resize="squash", crop_ratio=1.0)
CROP = Preprocessing((224, 224), resize="center_crop", crop_ratio=0.875)


def photo(path: Path, size: tuple[int, int], orientation: int = 1, fmt: str = "JPEG") -> Path:
    """A smooth, photo-like image (gradients and a disc) of ``size`` (width, height)."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 255 * xs / max(width - 1, 1)
    green = 255 * ys / max(height - 1, 1)
    blue = 255.0 * ((xs - width / 3) ** 2 + (ys - height / 2) ** 2 < (min(size) / 4) ** 2)
    pixels = np.stack([red, green, blue], axis=-1).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, fmt, quality=90, exif=exif)
    return path


def test_a_camera_size_jpeg_is_decoded_at_a_reduced_scale(tmp_path: Path) -> None:
    path = photo(tmp_path / "big.jpg", (2000, 1500))
    assert open_image(path).size == (2000, 1500)
    assert open_image(path, SQUASH).size == (1000, 750), "1/2: the deepest reduction allowed"
    assert open_image(path, CROP).size == (1000, 750), "covers 256 on the shorter side"
    small = Preprocessing((32, 32), resize="squash", crop_ratio=1.0)
    assert open_image(path, small).size == (1000, 750), "1/2 at most: 1/4 and 1/8 filter coarsely"


def test_the_reduced_scale_follows_the_upright_image(tmp_path: Path) -> None:
    # Stored 3000 x 600, turned a quarter by its EXIF tag: upright 600 wide, 3000 high.
    path = photo(tmp_path / "turned.jpg", (3000, 600), orientation=6)
    wide = Preprocessing((112, 448), resize="squash", crop_ratio=1.0)  # 448 wide, 112 high
    image = open_image(path, wide)
    assert image.size == (600, 3000), "upright 600 wide: no reduction keeps 448 (1/2 gives 300)"
    assert image.getexif().get(0x0112, 1) == 1, "upright, tag removed"
    tall = Preprocessing((448, 112), resize="squash", crop_ratio=1.0)
    assert open_image(path, tall).size == (300, 1500), "1/2 of the upright image still covers it"


def test_other_formats_and_small_images_decode_whole(tmp_path: Path) -> None:
    png = photo(tmp_path / "big.png", (1200, 900), fmt="PNG")
    assert open_image(png, SQUASH).size == (1200, 900)
    small = photo(tmp_path / "small.jpg", (400, 300))
    assert open_image(small, SQUASH).size == (400, 300), "a 1/2 decode would fall below 224"


@settings(max_examples=25, deadline=None)
@given(
    width=st.integers(16, 1600),
    height=st.integers(16, 1600),
    side=st.sampled_from([16, 32, 96, 224]),
    squash=st.booleans(),
    ratio=st.sampled_from([1.0, 0.875, 0.5]),
)
def test_the_decode_never_falls_below_the_resize_target(
    tmp_path_factory: pytest.TempPathFactory,
    width: int,
    height: int,
    side: int,
    squash: bool,
    ratio: float,
) -> None:
    spec = Preprocessing(
        (side, side),
        resize="squash" if squash else "center_crop",
        crop_ratio=1.0 if squash else ratio,
    )
    path = photo(tmp_path_factory.mktemp("jpg") / "a.jpg", (width, height))
    decoded = open_image(path, spec)
    full_target = spec.resize_target((height, width))
    target = spec.resize_target((decoded.height, decoded.width))
    assert decoded.width >= min(width, target[1])
    assert decoded.height >= min(height, target[0])
    assert decoded.width >= min(width, full_target[1] - 1)
    assert decoded.height >= min(height, full_target[0] - 1)
    assert decoded.width * 2 >= width
    assert decoded.height * 2 >= height


def test_the_reduced_decode_prepares_nearly_the_same_tensor(tmp_path: Path) -> None:
    path = photo(tmp_path / "big.jpg", (2000, 1500))
    for spec in (SQUASH, CROP):
        transform = spec.transform()
        full, reduced = transform(open_image(path)), transform(open_image(path, spec))
        assert full.shape == reduced.shape == (3, 224, 224)
        assert (full - reduced).abs().mean() < 0.02, "within the JPEG's own error"


def test_the_data_set_decodes_reduced_only_for_the_evaluation_transform(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        photo(tmp_path / name / "1.jpg", (2000, 1500))
    evaluation = ImageFolderDataset(tmp_path, SQUASH.transform())
    assert evaluation.load_image(0).size == (1000, 750)
    generator = torch.Generator().manual_seed(0)
    from vitlib.data import train_transform

    training = ImageFolderDataset(tmp_path, train_transform(SQUASH, generator=generator))
    assert training.load_image(0).size == (2000, 1500), "random crops need every pixel"
