"""Datasets, transforms and loaders: the 8x8 digits, image folders, and their DataLoaders.

Pillow and scikit-learn are the optional extra ``vitlib[data]``; they are imported only when needed.
"""

from __future__ import annotations

from vitlib.data.digits import DIGITS_MEAN, DIGITS_STD, DigitsDataset, digits_preprocessing
from vitlib.data.image_folder import (
    IMAGE_EXTENSIONS,
    ImageFolderDataset,
    SkippedImagesWarning,
    load_image_folders,
)
from vitlib.data.loaders import make_dataloaders
from vitlib.data.preprocessing import Preprocessing, train_transform
from vitlib.data.transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "DIGITS_MEAN",
    "DIGITS_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "DigitsDataset",
    "ImageFolderDataset",
    "Preprocessing",
    "SkippedImagesWarning",
    "digits_preprocessing",
    "load_image_folders",
    "make_dataloaders",
    "train_transform",
]
