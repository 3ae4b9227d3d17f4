"""`extract_features`: a model's frozen representation of labelled images, for linear probes.

The representation is the pre-logits one: the pooled token (class token or patch mean) after
the final norm (eq. 4's ``LN``), through the tanh pre-logits layer where the model has one;
what ``forward_head(..., pre_logits=True)`` returns and the head would read. Features of a
folder can be cached in a safetensors file keyed by the model's weights and the folder's files,
so a second probe of the same data reads them back at once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from vitlib._checks import check_positive_int, check_type, type_error
from vitlib._runtime import eval_mode, resolve_device
from vitlib.errors import DataError
from vitlib.files import write_files
from vitlib.vit import ViT

__all__ = ["Features", "extract_features"]

#: What a cache file's metadata holds under this key: the digest of the model and the data.
_CACHE_KEY: Final = "vitlib_features_key"

FeatureSource = str | os.PathLike[str] | Dataset[Any] | Iterable[Any]
"""A folder of class folders, a ``Dataset`` of ``(image, label)`` samples (prepared tensors),
or an iterable of ``(images, labels)`` batches."""


@dataclass(frozen=True)
class Features:
    """Features of labelled images.

    Attributes:
        features: ``(N, num_features)`` float32, one row per image.
        labels: ``(N,)`` int64 class indices.
        classes: The class names, in index order (a folder's sorted class folders; else the
            indices as strings).
    """

    features: Tensor
    labels: Tensor
    classes: tuple[str, ...]

    def __len__(self) -> int:
        """Number of images."""
        return len(self.labels)


def extract_features(
    model: ViT | str | os.PathLike[str],
    data: FeatureSource,
    *,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    cache: str | os.PathLike[str] | None = None,
) -> Features:
    """The pre-logits representation of every image of ``data``, with its label.

    Args:
        model: A [`ViT`][vitlib.ViT] (its head, if any, is not used), or anything
            [`load_pretrained`][vitlib.load_pretrained] reads.
        data: A folder of class folders (``DIR/<class>/<images>``, any classes: the model's
            own labels are not used), prepared by the model's recorded preprocessing (ImageNet's
            at its input size where it records none); or a ``Dataset`` of ``(image, label)``
            samples or an iterable of ``(images, labels)`` batches, already prepared.
        batch_size: Images per forward pass.
        device: Where to run; default the model's device.
        cache: A ``.safetensors`` file (folders only): read when it holds the features of this
            model's weights and this folder's files (names, sizes, times), else computed and
            written there.

    Returns:
        [`Features`][vitlib.inference.features.Features], on the CPU.

    Raises:
        DataError: ``data`` holds no images; or ``cache`` is given for data that is not a
            folder.
        InputTypeError: ``data`` is none of the kinds above.
    """
    from vitlib.inference.predict import load_model

    vit = load_model(model)
    check_positive_int("batch_size", batch_size)
    if isinstance(data, (str, os.PathLike)):
        return _folder_features(vit, Path(data), batch_size, device, cache)
    if cache is not None:
        raise DataError(
            f"cache={str(cache)!r} keys the features by a folder's files; for a Dataset or "
            "batches, keep the returned Features yourself (torch.save, or safetensors)."
        )
    if isinstance(data, Dataset) and not isinstance(data, DataLoader):
        data = DataLoader(data, batch_size=batch_size, shuffle=False)
    if isinstance(data, (bytes, bytearray)) or not isinstance(data, Iterable):
        raise type_error(
            "data", data, "a folder path, a Dataset of (image, label) or (images, labels) batches"
        )
    features, labels = _run(vit, data, device)
    classes = tuple(str(index) for index in range(int(labels.max()) + 1 if len(labels) else 0))
    return Features(features, labels, classes)


def _folder_features(
    model: ViT,
    root: Path,
    batch_size: int,
    device: torch.device | str | None,
    cache: str | os.PathLike[str] | None,
) -> Features:
    from vitlib.checkpoints.metadata import default_preprocessing, model_metadata
    from vitlib.data.image_folder import ImageFolderDataset

    spec = model_metadata(model).preprocessing or default_preprocessing(model.config)
    folder = ImageFolderDataset(root, spec.transform())
    key = _cache_key(model, folder.samples, spec.to_dict()) if cache is not None else ""
    if cache is not None and (found := _read_cache(Path(cache), key)) is not None:
        return Features(found[0], found[1], tuple(folder.classes))
    loader = DataLoader(folder, batch_size=batch_size, shuffle=False)
    features, labels = _run(model, loader, device)
    if cache is not None:
        _write_cache(Path(cache), key, features, labels)
    return Features(features, labels, tuple(folder.classes))


@torch.no_grad()
def _run(
    model: ViT, batches: Iterable[Any], device: torch.device | str | None
) -> tuple[Tensor, Tensor]:
    target = resolve_device(model, device)
    rows: list[Tensor] = []
    labels: list[Tensor] = []
    with eval_mode(model):
        for index, batch in enumerate(batches):
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise DataError(
                    f"batch {index} is a {type(batch).__name__}; expected (images, labels) pairs"
                )
            images, targets = batch
            check_type(f"the images of batch {index}", images, Tensor, "a tensor")
            tokens = model.forward_features(images.to(target))
            rows.append(model.forward_head(tokens, pre_logits=True).float().cpu())
            labels.append(torch.as_tensor(targets).long().cpu())
    if not rows:
        raise DataError("the data yielded no images; expected at least one labelled image.")
    return torch.cat(rows), torch.cat(labels)


def _cache_key(model: ViT, samples: list[tuple[Path, int]], preprocessing: dict[str, Any]) -> str:
    """A digest of what the features depend on: the model's config and weights, the files
    (names, sizes, modification times, labels) and the preprocessing."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    for path, label in samples:
        info = path.stat()
        digest.update(f"{path}|{info.st_size}|{info.st_mtime_ns}|{label}\n".encode())
    digest.update(json.dumps(preprocessing, sort_keys=True).encode())
    return digest.hexdigest()


def _read_cache(path: Path, key: str) -> tuple[Tensor, Tensor] | None:
    """The cached features and labels, or None when ``path`` is missing, unreadable or holds
    the features of other weights or files."""
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            if (handle.metadata() or {}).get(_CACHE_KEY) != key:
                return None
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError):
        return None  # a damaged cache is computed again and replaced
    return tensors["features"], tensors["labels"]


def _write_cache(path: Path, key: str, features: Tensor, labels: Tensor) -> None:
    def write(staging: Path) -> None:
        save_file(
            {"features": features.contiguous(), "labels": labels.contiguous()},
            str(staging / path.name),
            metadata={_CACHE_KEY: key},
        )

    write_files(path.parent, write, overwrite=True, what="extract_features", exclusive=False)
