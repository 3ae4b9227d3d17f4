"""`predict`: a saved model's top classes for your own images, prepared as its test set was.

```python
model = vitlib.load_pretrained("runs/sports")          # the run's best/ model, with its labels
for prediction in vitlib.predict(model, ["my_photo.jpg"], top_k=3):
    print(prediction.source, prediction.label, f"{prediction.probability:.1%}")
```

The images are prepared by the model's recorded [`Preprocessing`][vitlib.data.Preprocessing]
and classified in batches; docs/predict.md says more.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union, cast

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from vitlib._checks import check_bool, check_positive_int, check_type, type_error
from vitlib._runtime import eval_mode, resolve_device
from vitlib.checkpoints.metadata import default_preprocessing, model_metadata
from vitlib.data.image_folder import SkippedImagesWarning, image_files, open_image
from vitlib.data.loaders import decode_workers
from vitlib.data.preprocessing import Preprocessing, PreprocessTransform
from vitlib.errors import DataError
from vitlib.inference.optimize import Precision, at_precision
from vitlib.training.progress import Progress
from vitlib.vit import ViT

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "ImageInput",
    "Prediction",
    "PredictionStream",
    "Predictions",
    "SkippedImage",
    "iter_predict",
    "predict",
]

ImageInput = Union[str, os.PathLike[str], "Image.Image", Tensor]
"""An image path, a PIL image, or a tensor: uint8 in 0..255 or float in [0, 1], (C, H, W) or a
batch (B, C, H, W), with C = 1 or 3."""


@dataclass(frozen=True)
class Prediction:
    """The ``top_k`` classes of one image, most probable first.

    Attributes:
        source: The image's path, or ``"image <i>"`` for a PIL image or tensor (its position).
        labels: Class names.
        probabilities: Softmax probabilities of those classes.
        indices: Class indices of those classes.
    """

    source: str
    labels: tuple[str, ...]
    probabilities: tuple[float, ...]
    indices: tuple[int, ...]

    @property
    def label(self) -> str:
        """The most probable class."""
        return self.labels[0]

    @property
    def probability(self) -> float:
        """The probability of the most probable class."""
        return self.probabilities[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: ``{"source", "top": [{"label", "index", "probability"}, ...]}``."""
        return {
            "source": self.source,
            "top": [
                {"label": label, "index": index, "probability": probability}
                for label, index, probability in zip(
                    self.labels, self.indices, self.probabilities, strict=True
                )
            ],
        }


@dataclass(frozen=True)
class SkippedImage:
    """An input that could not be read as an image: its ``source`` and the ``reason``."""

    source: str
    reason: str


class Predictions(list[Prediction]):
    """What [`predict`][vitlib.predict] returns: a list of one
    [`Prediction`][vitlib.inference.predict.Prediction] per readable image, in input order.

    Attributes:
        skipped: The unreadable inputs, in input order (each also named by a warning).
        preprocessing: How the images were prepared (to draw them, for example).
    """

    def __init__(self, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.skipped: list[SkippedImage] = []
        self.preprocessing = preprocessing


def predict(
    model: ViT | str | os.PathLike[str],
    images: ImageInput | Iterable[ImageInput],
    *,
    top_k: int = 5,
    batch_size: int = 32,
    strict: bool = False,
    labels: Sequence[str] | None = None,
    preprocessing: Preprocessing | None = None,
    device: torch.device | str | None = None,
    precision: Precision | None = None,
    progress: bool = False,
    num_workers: int | None = None,
) -> Predictions:
    """Classify images with a trained model, prepared as its checkpoint records.

    Args:
        model: A [`ViT`][vitlib.ViT], or anything
            [`load_pretrained`][vitlib.load_pretrained] reads (a checkpoint folder, a run
            directory, whose ``best/`` is used, a hub name).
        images: One image or many (``ImageInput``: paths, folders, PIL images, raw-pixel
            tensors), each resized, cropped and normalised.
        top_k: How many classes per image (all of them if the model has fewer).
        batch_size: Images per forward pass.
        strict: Raise on the first unreadable image instead of skipping it.
        labels: Class names, overriding the recorded ones (default: the checkpoint's, else the
            class indices as strings).
        preprocessing: Overrides the recorded preprocessing. Without either, ImageNet's at
            the model's input size is assumed, with a warning.
        device: Where to run; default the model's device.
        precision: ``None`` runs the model as it is; ``"fp32"``, ``"bf16"`` or ``"int8"`` run
            its [`optimize_for_inference`][vitlib.optimize_for_inference] copy at that
            precision (on the CPU), faster; docs/predict.md gives their agreement.
        progress: Show a bar with the images done, images/s and the time left (on a terminal,
            with tqdm; nothing in a log).
        num_workers: Processes that decode image files while the model runs; ``None`` lets
            [`decode_workers`][vitlib.data.loaders.decode_workers] choose (none for one batch,
            else one per CPU, up to 4); ``0`` decodes in this process. Used when every input is
            a path.

    Returns:
        [`Predictions`][vitlib.inference.predict.Predictions]: a list of one ``Prediction`` per
        readable image, in input order, with the ``skipped`` inputs and the ``preprocessing``.
        The model's train/eval mode is restored afterwards.

    Raises:
        DataError: An unreadable image with ``strict=True`` (naming it), a tensor that is not
            an image, or a model without a classification head.
        TypeError: An input of another type; ``top_k`` or ``batch_size`` not an int >= 1.
        ValueError: ``labels`` not one name per class.
        ConfigError: ``precision`` is not one of its values, or is given for a GPU;
            ``num_workers`` negative or over `max_num_workers`.

    Warns:
        SkippedImagesWarning: Unreadable images were skipped; it names each with the reason.
    """
    stream = iter_predict(
        model,
        images,
        top_k=top_k,
        batch_size=batch_size,
        strict=strict,
        labels=labels,
        preprocessing=preprocessing,
        device=device,
        precision=precision,
        progress=progress,
        num_workers=num_workers,
    )
    run = Predictions(stream.preprocessing)
    run.extend(stream)
    run.skipped = stream.skipped
    if run.skipped:
        named = "; ".join(f"{image.source} ({image.reason})" for image in run.skipped)
        warnings.warn(
            f"skipped {len(run.skipped)} unreadable image(s): {named}; pass strict=True to "
            "raise instead",
            SkippedImagesWarning,
            stacklevel=2,
        )
    return run


class PredictionStream(Iterator[Prediction]):
    """What [`iter_predict`][vitlib.inference.predict.iter_predict] returns: the predictions one
    by one, each batch classified when the previous one has been taken.

    Attributes:
        skipped: The unreadable inputs met so far, in input order (no warning is given: read
            it, or use [`predict`][vitlib.predict], which warns).
        preprocessing: How the images are prepared.
    """

    def __init__(
        self,
        predictions: Iterator[Prediction],
        skipped: list[SkippedImage],
        preprocessing: Preprocessing,
    ) -> None:
        self._predictions = predictions
        self.skipped = skipped
        self.preprocessing = preprocessing

    def __iter__(self) -> PredictionStream:
        return self

    def __next__(self) -> Prediction:
        return next(self._predictions)


def iter_predict(
    model: ViT | str | os.PathLike[str],
    images: ImageInput | Iterable[ImageInput],
    *,
    top_k: int = 5,
    batch_size: int = 32,
    strict: bool = False,
    labels: Sequence[str] | None = None,
    preprocessing: Preprocessing | None = None,
    device: torch.device | str | None = None,
    precision: Precision | None = None,
    progress: bool = False,
    num_workers: int | None = None,
) -> PredictionStream:
    """[`predict`][vitlib.predict], one prediction at a time: nothing is kept once it is taken,
    so the memory stays the same whatever the number of images (``vitlib predict`` prints each
    line as its batch is classified).

    The arguments are ``predict``'s, checked at the call; the model's train/eval mode is restored
    when the stream is exhausted or closed. Unreadable images are listed in the stream's
    ``skipped`` as they are met (or raised with ``strict=True``), without a warning.

    Raises:
        The errors of ``predict``, the first ones at the call, those of an image when it is
        reached.
    """
    vit = resolve_model(model)
    check_positive_int("top_k", top_k)
    check_positive_int("batch_size", batch_size)
    check_bool("strict", strict)
    names = _labels(vit, labels)
    spec = _preprocessing(vit, preprocessing)
    transform = spec.transform()
    target = resolve_device(vit, device)
    vit = at_precision(vit, precision, target)
    items = list(_inputs(images))  # folders expanded: the total the progress bar counts to
    total = (
        None if any(isinstance(item, Tensor) and item.dim() == 4 for item in items) else len(items)
    )
    workers = decode_workers(num_workers, len(items), batch_size)
    if not all(isinstance(item, (str, os.PathLike)) for item in items):
        workers = 0  # PIL images and tensors are prepared here
    bar = Progress(total, "predict", enabled=check_bool("progress", progress), unit="img")
    skipped: list[SkippedImage] = []
    skipping = _Skipping(skipped, strict, bar)
    batches = (
        _decoded_in_workers(items, transform, skipping, batch_size, workers)
        if workers
        else _batched(_prepared(items, transform, skipping), batch_size)
    )
    return PredictionStream(_stream(vit, batches, names, top_k, target, bar), skipped, spec)


def _stream(
    model: ViT,
    batches: Iterable[tuple[list[str], Tensor]],
    names: tuple[str, ...],
    top_k: int,
    device: torch.device,
    bar: Progress,
) -> Iterator[Prediction]:
    with eval_mode(model), bar:
        for sources, batch in batches:
            yield from _classify(model, sources, batch, names, top_k, device)
            bar.update(count=len(sources))


def load_model(model: ViT | str | os.PathLike[str]) -> ViT:
    """``model`` itself, or the model [`load_pretrained`][vitlib.load_pretrained] reads from it
    (a run folder, a checkpoint, a hub name)."""
    check_type("model", model, (ViT, str, os.PathLike), "a vitlib.ViT or a checkpoint path")
    if isinstance(model, ViT):
        return model
    from vitlib.checkpoints import load_pretrained

    return load_pretrained(model)


def resolve_model(model: ViT | str | os.PathLike[str]) -> ViT:
    """``model``, or the model ``load_pretrained`` reads from it; refused without a head."""
    vit = load_model(model)
    if vit.config.num_classes == 0:
        raise DataError(
            "the model has no classification head (num_classes=0): it outputs features, not "
            "classes; predict with a model trained for classification."
        )
    return vit


def _labels(model: ViT, labels: Sequence[str] | None) -> tuple[str, ...]:
    from vitlib.checkpoints.metadata import check_labels

    if labels is not None:
        check_labels(labels, model.config.num_classes)
        return tuple(labels)
    recorded = model_metadata(model).labels
    return recorded or tuple(str(index) for index in range(model.config.num_classes))


def _preprocessing(model: ViT, given: Preprocessing | None) -> Preprocessing:
    if given is not None:
        check_type("preprocessing", given, Preprocessing, "a vitlib.data.Preprocessing")
        return given
    recorded = model_metadata(model).preprocessing
    if recorded is not None:
        return recorded
    assumed = default_preprocessing(model.config)
    warnings.warn(
        f"the model records no preprocessing (built in code, or a checkpoint of an older vitlib "
        f"or another library); assuming {assumed}. Pass "
        "preprocessing=vitlib.data.Preprocessing(...) with the values it was trained with.",
        UserWarning,
        stacklevel=4,
    )
    return assumed


def _inputs(images: ImageInput | Iterable[ImageInput]) -> Iterator[ImageInput]:
    """The inputs one by one: a single path, image or tensor is one input, and a folder stands
    for the image files below it (sorted; hidden ones left out), as the command expands it."""
    items: Iterable[Any]
    if isinstance(images, (str, os.PathLike, Tensor)) or _is_pil(images):
        items = [images]
    else:
        check_type("images", images, Iterable, "a path, a PIL image, a tensor or a list of them")
        items = cast("Iterable[Any]", images)
    for item in items:
        if isinstance(item, (str, os.PathLike)) and Path(item).is_dir():
            yield from image_files(Path(item))
        else:
            yield item


def _is_pil(value: object) -> bool:
    try:
        from PIL import Image
    except ImportError:
        return False
    return isinstance(value, Image.Image)


def _prepared(
    images: ImageInput | Iterable[ImageInput], transform: PreprocessTransform, skipping: _Skipping
) -> Iterator[tuple[str, Tensor]]:
    """``(source, prepared tensor)`` per readable image, in this process; unreadable files go
    to ``skipping``."""
    position = 0
    for item in _inputs(images):
        if isinstance(item, Tensor):
            batch = item[None] if item.dim() == 3 else item
            if batch.dim() != 4:
                raise DataError(
                    f"image {position} is a tensor of shape {tuple(item.shape)}; expected "
                    "(C, H, W) or (B, C, H, W) with C = 1 or 3."
                )
            for image in batch:
                yield f"image {position}", transform.from_pixels(_unit_pixels(image, position))
                position += 1
            continue
        if isinstance(item, (str, os.PathLike)):
            prepared = _decode(item, transform)
            if isinstance(prepared, Tensor):
                yield str(item), prepared
            else:
                skipping.skip(str(item), prepared)
        elif _is_pil(item):
            yield f"image {position}", transform(item)
        else:
            raise type_error(f"image {position}", item, "a path, a PIL image or a tensor")
        position += 1


def _unit_pixels(image: Tensor, position: int) -> Tensor:
    """A raw image tensor as float (C, H, W) in [0, 1]."""
    if image.shape[0] not in (1, 3):
        raise DataError(
            f"image {position} has {image.shape[0]} channels (shape {tuple(image.shape)}); "
            "expected (C, H, W) with C = 1 or 3."
        )
    if image.dtype == torch.uint8:
        return image.float() / 255.0
    if not image.is_floating_point():
        raise DataError(
            f"image {position} is a {image.dtype} tensor; expected uint8 in 0..255 or float in "
            "[0, 1]."
        )
    pixels = image.detach().cpu().float()
    if not bool(torch.isfinite(pixels).all()) or pixels.min() < 0.0 or pixels.max() > 1.0:
        raise DataError(
            f"image {position} is a float tensor with values outside [0, 1] (from "
            f"{float(pixels.min()):g} to {float(pixels.max()):g}); predict takes raw pixels "
            "in [0, 1] (or uint8), not normalised ones. Call the model itself on tensors that "
            "are already prepared."
        )
    return pixels


class _Skipping:
    """Where unreadable files go: raised with ``strict``, else kept in ``skipped`` and counted
    as done on ``bar``."""

    def __init__(self, skipped: list[SkippedImage], strict: bool, bar: Progress) -> None:
        self.skipped, self.strict, self.bar = skipped, strict, bar

    def skip(self, source: str, reason: str) -> None:
        if self.strict:
            raise DataError(
                f"cannot read image {source}: {reason}; fix or remove it, or drop "
                "strict=True (--strict) to skip unreadable images"
            )
        self.skipped.append(SkippedImage(source, reason))
        self.bar.update(count=1)


def _decode(path: str | os.PathLike[str], transform: PreprocessTransform) -> Tensor | str:
    """The prepared image of the file ``path``, or why it cannot be read (a file that cannot
    be decoded, or whose pixels are out of range)."""
    try:
        return transform(open_image(Path(path), transform.preprocessing))
    except DataError as error:
        return str(error)


def _batched(
    prepared: Iterable[tuple[str, Tensor]], batch_size: int
) -> Iterator[tuple[list[str], Tensor]]:
    """``(sources, images)`` of up to ``batch_size`` images, stacked into one reused buffer:
    each batch is classified before the next is stacked."""
    buffer: Tensor | None = None
    sources: list[str] = []
    tensors: list[Tensor] = []
    for source, tensor in prepared:
        sources.append(source)
        tensors.append(tensor)
        if len(tensors) == batch_size:
            buffer = _stack(tensors, buffer)
            yield sources, buffer
            sources, tensors = [], []
    if tensors:
        yield sources, _stack(tensors, buffer)[: len(tensors)]


def _stack(tensors: list[Tensor], buffer: Tensor | None) -> Tensor:
    """``torch.stack(tensors)``, into ``buffer`` when it has room and the images' shape."""
    shape = (len(tensors), *tensors[0].shape)
    if buffer is None or buffer.shape[1:] != shape[1:] or buffer.shape[0] < shape[0]:
        return torch.stack(tensors)
    return torch.stack(tensors, out=buffer[: shape[0]])


class _FileImages(Dataset[tuple[Tensor | None, str]]):
    """Image files decoded and prepared in a loader worker: ``(image, "")``, or ``(None,
    reason)`` for a file that cannot be read."""

    def __init__(
        self, paths: Sequence[str | os.PathLike[str]], transform: PreprocessTransform
    ) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor | None, str]:
        prepared = _decode(self.paths[index], self.transform)
        return (prepared, "") if isinstance(prepared, Tensor) else (None, prepared)


def _stack_readable(
    samples: list[tuple[Tensor | None, str]],
) -> tuple[Tensor | None, list[str]]:
    """A worker's batch: the readable images stacked, and each file's reason ("" if read)."""
    readable = [image for image, _ in samples if image is not None]
    return (torch.stack(readable) if readable else None), [reason for _, reason in samples]


def _decoded_in_workers(
    paths: list[ImageInput],
    transform: PreprocessTransform,
    skipping: _Skipping,
    batch_size: int,
    workers: int,
) -> Iterator[tuple[list[str], Tensor]]:
    """``(sources, images)`` batches of the files ``paths``, decoded and stacked by ``workers``
    processes a few batches ahead of the model, in order."""
    files = cast("list[str | os.PathLike[str]]", paths)
    loader = DataLoader(
        _FileImages(files, transform),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_stack_readable,
    )
    start = 0
    for images, reasons in loader:
        names = [str(path) for path in files[start : start + len(reasons)]]
        start += len(reasons)
        for source, reason in zip(names, reasons, strict=True):
            if reason:
                skipping.skip(source, reason)
        if images is not None:
            yield (
                [source for source, reason in zip(names, reasons, strict=True) if not reason],
                images,
            )


@torch.inference_mode()
def _classify(
    model: ViT,
    sources: list[str],
    images: Tensor,
    names: tuple[str, ...],
    top_k: int,
    device: torch.device,
) -> list[Prediction]:
    probabilities = model(images.to(device)).float().softmax(dim=-1).cpu()
    top = probabilities.topk(min(top_k, probabilities.shape[-1]), dim=-1)
    return [
        Prediction(source, tuple(names[index] for index in indices), tuple(values), tuple(indices))
        for source, values, indices in zip(
            sources, top.values.tolist(), top.indices.tolist(), strict=True
        )
    ]
