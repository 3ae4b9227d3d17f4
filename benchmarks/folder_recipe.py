"""Small image folders of several kinds, trained with the recipe `vitlib.training.auto_recipe`
chooses and with a few alternatives: test accuracy and wall time of each.

Each kind is a folder ``<kind>/train/<class>/*.jpg`` and ``<kind>/test/<class>/*.jpg``, made
deterministically from ``--seed`` (100 train and 25 test JPEGs a class by default, sides drawn
from 64-200 px independently, so aspect ratios reach 3:1, with pixel noise):

- ``shapes``: a circle, square, triangle or a patch of stripes, anywhere, any colour;
- ``textures``: the whole image striped, checked, dotted or ringed, at any scale and angle;
- ``colours``: a red, green, blue or yellow shape of any kind at a random position;
- ``edges``: a circle, square, triangle or cross whose centre lies near an edge.

Each run trains from scratch with vitlib's engine (``train_one_epoch`` and ``evaluate``, one
process, float32) and evaluates the test split after every epoch, as ``vitlib train`` does; the
wall time covers building the data sets, training and evaluating. ``--finetune`` also trains the
recipe on the first kind and fine-tunes that model (a new head) on each other kind with the same
recipe, the whole model or the head alone, beside training from scratch.

    python benchmarks/folder_recipe.py --json out.json                 # 4 kinds x 4 recipes
    python benchmarks/folder_recipe.py --kinds edges --recipes auto,centre-crop,imagenet-crops
    python benchmarks/folder_recipe.py --recipes auto --finetune
    python benchmarks/folder_recipe.py --avx2 ...      # as on a CPU without AVX-512 or AMX
    python benchmarks/folder_recipe.py --quick --json out.json         # a smoke test, < 1 min

``--avx2`` restarts the script with PyTorch, oneDNN and MKL held to AVX2 kernels, so that the
wall times are those of a 2-core AVX2 machine (the target of docs/training.md). The figures of
the docs come from this script; the machine is printed with them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

import vitlib
from vitlib.data import ImageFolderDataset, make_dataloaders
from vitlib.training import (
    TrainConfig,
    build_optimizer,
    build_scheduler,
    evaluate,
    seed_everything,
    train_one_epoch,
)
from vitlib.training.auto_recipe import (
    FolderRecipe,
    FolderStats,
    choose_recipe,
    read_folder_stats,
)

#: The CLI's from-scratch settings the recipe does not choose (``vitlib train``'s defaults).
WEIGHT_DECAY: Final = 0.05
LABEL_SMOOTHING: Final = 0.1
POSITION_STD: Final = 1.0
TARGET_ACCURACY: Final = 0.90
TIME_BUDGET_S: Final = 600.0
AVX2_ENVIRONMENT: Final = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}
_CPU_FLAGS: Final = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")

Rgb = tuple[int, int, int]
Drawer = Callable[[np.random.Generator, int, tuple[int, int]], Image.Image]

# ---------------------------------------------------------------------------------------------
# The generated folders


def _rgb(values: Iterable[float]) -> Rgb:
    """Three numbers as an ``(r, g, b)`` tuple of ints clipped to 0-255."""
    red, green, blue = (int(min(max(value, 0), 255)) for value in values)
    return red, green, blue


def _colour(rng: np.random.Generator, avoid: Rgb | None = None) -> Rgb:
    """A random colour at least 120 apart (sum of channel differences) from ``avoid``."""
    while True:
        colour = _rgb(rng.integers(0, 256, 3).tolist())
        if avoid is None or sum(abs(a - b) for a, b in zip(colour, avoid, strict=True)) >= 120:
            return colour


def _background(rng: np.random.Generator, size: tuple[int, int], colour: Rgb) -> Image.Image:
    """A flat ``colour`` with a soft linear gradient."""
    width, height = size
    ramp = np.linspace(-1.0, 1.0, width)[None, :, None] * rng.uniform(-25, 25, 3)
    ramp = ramp + np.linspace(-1.0, 1.0, height)[:, None, None] * rng.uniform(-25, 25, 3)
    pixels = np.clip(np.array(colour, dtype=np.float64) + ramp, 0, 255)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def _noisy(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """Gaussian pixel noise of a random strength (std 4-16 of 255)."""
    pixels = np.asarray(image, dtype=np.float64)
    pixels = pixels + rng.normal(0.0, rng.uniform(4, 16), pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _polygon(
    centre: tuple[float, float], radius: float, corners: int, angle: float
) -> list[tuple[float, float]]:
    return [
        (
            centre[0] + radius * math.cos(angle + 2 * math.pi * k / corners),
            centre[1] + radius * math.sin(angle + 2 * math.pi * k / corners),
        )
        for k in range(corners)
    ]


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    centre: tuple[float, float],
    radius: float,
    colour: Rgb,
    rng: np.random.Generator,
) -> None:
    """Draw ``shape`` (circle, square, triangle, stripes or cross) of ``radius`` at ``centre``."""
    x, y = centre
    angle = float(rng.uniform(0, 2 * math.pi))
    if shape == "circle":
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    elif shape == "square":
        draw.polygon(_polygon(centre, radius * 1.2, 4, angle), fill=colour)
    elif shape == "triangle":
        draw.polygon(_polygon(centre, radius * 1.3, 3, angle), fill=colour)
    elif shape == "cross":
        arm = radius * 0.35
        for turn in (angle, angle + math.pi / 2):
            dx, dy = math.cos(turn), math.sin(turn)
            ends = [(x + s * radius * dx, y + s * radius * dy) for s in (-1.0, 1.0)]
            draw.line(ends, fill=colour, width=max(2, round(2 * arm)))
    else:  # stripes: three parallel bars
        dx, dy = math.cos(angle), math.sin(angle)
        for offset in (-0.66, 0.0, 0.66):
            cx, cy = x - offset * radius * dy, y + offset * radius * dx
            ends = [(cx - radius * dx, cy - radius * dy), (cx + radius * dx, cy + radius * dy)]
            draw.line(ends, fill=colour, width=max(2, round(radius * 0.3)))


def _object_image(
    rng: np.random.Generator,
    size: tuple[int, int],
    shape: str,
    colour: Rgb | None = None,
    *,
    near_edge: bool = False,
) -> Image.Image:
    """One object on a background: anywhere inside, or with its centre near a random edge."""
    width, height = size
    short = min(size)
    radius = float(rng.uniform(0.15, 0.28) * short)
    background = _colour(rng)
    colour = colour if colour is not None else _colour(rng, avoid=background)
    if near_edge:
        depth = float(rng.uniform(0.6, 1.0)) * radius  # up to 40% of the object outside
        along = float(
            rng.uniform(radius, max(radius + 1, (width if rng.random() < 0.5 else height) - radius))
        )
        edge = int(rng.integers(4))
        centre = [(depth, along), (width - depth, along), (along, depth), (along, height - depth)][
            edge
        ]
        centre = (min(centre[0], width - depth), min(centre[1], height - depth))
    else:
        centre = (
            float(rng.uniform(radius * 1.3, width - radius * 1.3)),
            float(rng.uniform(radius * 1.3, height - radius * 1.3)),
        )
    image = _background(rng, size, background)
    _draw_shape(ImageDraw.Draw(image), shape, centre, radius, colour, rng)
    return image


def _texture(rng: np.random.Generator, size: tuple[int, int], pattern: str) -> Image.Image:
    """The whole image covered by ``pattern`` at a random scale, angle and pair of colours."""
    width, height = size
    period = float(rng.uniform(8, 20))
    angle = float(rng.uniform(0, math.pi))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    u = (xs * math.cos(angle) + ys * math.sin(angle)) / period
    v = (-xs * math.sin(angle) + ys * math.cos(angle)) / period
    phase = rng.uniform(0, 1, 2)
    if pattern == "stripes":
        mask = np.floor(u + phase[0]) % 2 == 0
    elif pattern == "checks":
        mask = (np.floor(u + phase[0]) + np.floor(v + phase[1])) % 2 == 0
    elif pattern == "dots":
        du, dv = (u + phase[0]) % 1 - 0.5, (v + phase[1]) % 1 - 0.5
        mask = du**2 + dv**2 < 0.3**2
    else:  # rings around a random centre
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        mask = np.floor(np.hypot(xs - cx, ys - cy) / (period / 2) + phase[0]) % 2 == 0
    first = _colour(rng)
    second = _colour(rng, avoid=first)
    pixels = np.where(mask[..., None], np.array(first), np.array(second))
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


_HUES: Final[dict[str, Rgb]] = {
    "red": (210, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 210),
    "yellow": (225, 205, 40),
}


def _coloured(rng: np.random.Generator, size: tuple[int, int], hue: str) -> Image.Image:
    """A shape of any kind in a jittered ``hue`` on a grey-ish background."""
    jitter = rng.integers(-30, 31, 3)
    colour = _rgb(c + int(j) for c, j in zip(_HUES[hue], jitter, strict=True))
    shape = str(rng.choice(["circle", "square", "triangle", "cross"]))
    grey = int(rng.integers(60, 200))
    tint = rng.integers(-20, 21, 3)
    background = _rgb(grey + int(t) for t in tint)
    image = _background(rng, size, background)
    width, height = size
    radius = float(rng.uniform(0.12, 0.25) * min(size))
    centre = (
        float(rng.uniform(radius * 1.3, width - radius * 1.3)),
        float(rng.uniform(radius * 1.3, height - radius * 1.3)),
    )
    _draw_shape(ImageDraw.Draw(image), shape, centre, radius, colour, rng)
    return image


@dataclass(frozen=True)
class Kind:
    """A kind of folder: its class names and how to draw an image of a class."""

    classes: tuple[str, ...]
    draw: Callable[[np.random.Generator, tuple[int, int], str], Image.Image]


KINDS: Final[dict[str, Kind]] = {
    "shapes": Kind(
        ("circle", "square", "triangle", "stripes"),
        lambda rng, size, name: _object_image(rng, size, name),
    ),
    "textures": Kind(("stripes", "checks", "dots", "rings"), _texture),
    "colours": Kind(tuple(_HUES), _coloured),
    "edges": Kind(
        ("circle", "square", "triangle", "cross"),
        lambda rng, size, name: _object_image(rng, size, name, near_edge=True),
    ),
}


@dataclass(frozen=True)
class FolderSpec:
    """How many images a generated folder has, and their range of sides."""

    train_per_class: int = 100
    test_per_class: int = 25
    min_side: int = 64
    max_side: int = 200


def _image_size(rng: np.random.Generator, spec: FolderSpec) -> tuple[int, int]:
    """``(width, height)``: a width in the spec's range and an aspect ratio drawn log-uniformly
    from 0.6 to 1.7 (portrait 3:5 to landscape 16:9 and a little more), the height kept in range.
    """
    width = int(rng.integers(spec.min_side, spec.max_side + 1))
    aspect = math.exp(rng.uniform(math.log(0.6), math.log(1.7)))
    height = min(max(round(width / aspect), spec.min_side), spec.max_side)
    return width, height


def make_folder(root: Path, kind: str, spec: FolderSpec, seed: int) -> Path:
    """Write the folder of ``kind`` under ``root / kind`` (kept if complete); return it.

    Every image comes from its own generator, seeded by (seed, kind, split, class, index), so
    a folder is the same on every machine and whatever else is generated.
    """
    folder = root / kind
    done = folder / ".complete"
    if done.exists():
        return folder
    kind_index = list(KINDS).index(kind)
    for split_index, (split, count) in enumerate(
        (("train", spec.train_per_class), ("test", spec.test_per_class))
    ):
        for class_index, name in enumerate(KINDS[kind].classes):
            (folder / split / name).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                rng = np.random.default_rng([seed, kind_index, split_index, class_index, index])
                size = _image_size(rng, spec)
                image = _noisy(rng, KINDS[kind].draw(rng, size, name))
                quality = int(rng.integers(75, 96))
                image.save(folder / split / name / f"{index:04d}.jpg", quality=quality)
    done.touch()
    return folder


# ---------------------------------------------------------------------------------------------
# Recipes and runs


#: The alternatives to the chosen recipe: overrides of ``choose_recipe`` (``None``: the recipe
#: itself), or a function of the chosen recipe giving them.
RecipeChange = Callable[[FolderRecipe, FolderStats], dict[str, Any]]
RECIPES: Final[dict[str, RecipeChange]] = {
    "auto": lambda chosen, stats: {},
    # vitlib train's defaults before the recipe (ViT-Ti/16 at 224 px, ImageNet crops, centre
    # crop 0.875, batch 64, lr 2e-3, warmup 50), cut to 3 of their 10 epochs to fit 10 minutes.
    "old-defaults-3-epochs": lambda chosen, stats: {
        "preset": "ViT-Ti/16",
        "image_size": 224,
        "layers": 12,
        "epochs": 3,
        "batch_size": min(64, stats.train_images),
        "lr": 2e-3,
        "warmup_steps": 50,
        "crop_scale": (0.08, 1.0),
        "crop_aspect": (3 / 4, 4 / 3),
        "resize": "center_crop",
        "crop_ratio": 0.875,
    },
    "patch-16": lambda chosen, stats: {"preset": "ViT-Ti/16", "image_size": chosen.image_size},
    "2x-epochs": lambda chosen, stats: {"epochs": 2 * chosen.epochs},
    "half-epochs": lambda chosen, stats: {"epochs": max(1, chosen.epochs // 2)},
    "12-layers": lambda chosen, stats: {"layers": 12},
    "centre-crop": lambda chosen, stats: {"resize": "center_crop", "crop_ratio": 0.875},
    "imagenet-crops": lambda chosen, stats: {
        "crop_scale": (0.08, 1.0),
        "crop_aspect": (3 / 4, 4 / 3),
    },
}
DEFAULT_RECIPES: Final = ("auto", "old-defaults-3-epochs", "patch-16", "2x-epochs")


@dataclass(frozen=True)
class RunResult:
    """One training run."""

    kind: str
    recipe: str
    start: str
    test_accuracy: float
    best_test_accuracy: float
    test_accuracy_per_epoch: list[float]
    wall_time_s: float
    load_average: float
    settings: dict[str, Any]
    explanation: str


def datasets(data: Path, recipe: FolderRecipe) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    """The folder's train set (the recipe's crops and flips) and test set (its resize)."""
    spec = recipe.preprocessing()
    train = ImageFolderDataset(data / "train", recipe.train_transform(spec))
    test = ImageFolderDataset(data / "test", spec.transform())
    return train, test


def recipe_for(data: Path, name: str, overrides: Mapping[str, Any]) -> FolderRecipe:
    """Recipe ``name`` for the folder ``data``, with the ``--set`` overrides on top."""
    train = ImageFolderDataset(data / "train")
    stats = read_folder_stats(train.samples, len(train.classes))
    chosen = choose_recipe(stats, **overrides)
    return choose_recipe(stats, **{**overrides, **RECIPES[name](chosen, stats)})


def build_model(recipe: FolderRecipe, num_classes: int, start: vitlib.ViT | None) -> vitlib.ViT:
    """A new model of the recipe, or a copy of ``start`` with a new head."""
    if start is None:
        model = vitlib.ViT.from_config(recipe.config(num_classes))
        model.reset_parameters(position_std=POSITION_STD)
        return model
    return vitlib.load_pretrained(start, num_classes=num_classes)


def train(
    data: Path,
    recipe: FolderRecipe,
    *,
    seed: int,
    start: vitlib.ViT | None = None,
    head_only: bool = False,
    verbose: bool = False,
) -> tuple[vitlib.ViT, list[float], float]:
    """Train ``recipe`` on ``data`` (from ``start``'s weights if given, the head alone with
    ``head_only``); return the model, the test accuracy after each epoch and the wall time."""
    began = time.perf_counter()
    train_set, test_set = datasets(data, recipe)
    train_loader, test_loader = make_dataloaders(train_set, test_set, recipe.batch_size, seed=seed)
    seed_everything(seed)
    model = build_model(recipe, len(train_set.classes), start)
    if head_only:
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name.startswith("head.")
    config = TrainConfig(lr=recipe.lr, weight_decay=WEIGHT_DECAY)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(
        optimizer,
        schedule=config.schedule,
        warmup_steps=recipe.warmup_steps,
        total_steps=recipe.total_steps,
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
    accuracies, steps = [], 0
    for epoch in range(1, recipe.epochs + 1):
        left = None if recipe.max_steps is None else recipe.max_steps - steps
        done = train_one_epoch(
            model,
            train_loader,
            optimizer,
            scheduler=scheduler,
            loss_fn=loss_fn,
            step_offset=steps,
            epoch=epoch,
            max_steps=left,
            progress=False,
        )
        steps += done.steps
        accuracies.append(evaluate(model, test_loader).accuracy)
        if verbose:
            print(
                f"  epoch {epoch}: train {done.accuracy:.1%} (loss {done.loss:.3f}), "
                f"test {accuracies[-1]:.1%}, {time.perf_counter() - began:.0f} s",
                file=sys.stderr,
                flush=True,
            )
        if recipe.max_steps is not None and steps >= recipe.max_steps:
            break
    return model, accuracies, time.perf_counter() - began


def run(
    data: Path,
    kind: str,
    name: str,
    recipe: FolderRecipe,
    *,
    seed: int,
    start: str = "scratch",
    source: vitlib.ViT | None = None,
) -> tuple[RunResult, vitlib.ViT]:
    """One run, printed as it ends."""
    model, accuracies, seconds = train(
        data, recipe, seed=seed, start=source, head_only=start == "head only"
    )
    settings = {
        key: value for key, value in asdict(recipe).items() if key not in ("explanation", "given")
    }
    result = RunResult(
        kind=kind,
        recipe=name,
        start=start,
        test_accuracy=round(accuracies[-1], 4),
        best_test_accuracy=round(max(accuracies), 4),
        test_accuracy_per_epoch=[round(a, 4) for a in accuracies],
        wall_time_s=round(seconds, 1),
        load_average=round(os.getloadavg()[0], 2),
        settings={**settings, "total_steps": recipe.total_steps},
        explanation=recipe.explanation,
    )
    print(
        f"{kind:9} {name:22} {start:10} test {result.test_accuracy:.1%} "
        f"(best {result.best_test_accuracy:.1%}) in {seconds:6.1f} s, load {result.load_average}",
        flush=True,
    )
    return result, model


# ---------------------------------------------------------------------------------------------
# The machine and the report


def hold_to_avx2(script: Path) -> None:
    """Restart ``script`` (with this process's arguments) with PyTorch, oneDNN and MKL held to
    AVX2 kernels, unless they already are: the caps are read when the libraries load. Child
    processes inherit them."""
    if not all(os.environ.get(key) == value for key, value in AVX2_ENVIRONMENT.items()):
        os.execve(
            sys.executable,
            [sys.executable, str(script.resolve()), *sys.argv[1:]],
            {**os.environ, **AVX2_ENVIRONMENT},
        )


def machine() -> dict[str, Any]:
    """The CPU, its vector flags, PyTorch's kernel level and any ISA caps in force."""
    flags: set[str] = set()
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
            elif line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    present = [flag for flag in _CPU_FLAGS if flag in flags]
    capped = {key: os.environ[key] for key in AVX2_ENVIRONMENT if key in os.environ}
    if any(flag.startswith(("avx512", "amx")) for flag in present):
        level = "AVX-512" + (" and AMX" if "amx_tile" in present else "")
    else:
        level = "AVX2 only" if "avx2" in present else "no AVX2"
    return {
        "cpu": model,
        "cpu_flags": present,
        "vector_level": level,
        "torch_kernels": torch.backends.cpu.get_cpu_capability(),
        "isa_caps": capped,
        "threads": torch.get_num_threads(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "vitlib": vitlib.__version__,
    }


def machine_line(info: Mapping[str, Any]) -> str:
    caps = ", held to AVX2 kernels" if info["isa_caps"] else ""
    return (
        f"{info['cpu']} ({info['vector_level']}: {' '.join(info['cpu_flags']) or 'none'}), "
        f"{info['threads']} threads of {info['cores']} cores, torch {info['torch']} "
        f"({info['torch_kernels']} kernels{caps})"
    )


def markdown(results: list[RunResult]) -> str:
    lines = [
        "| kind | recipe | start | model | steps | test accuracy | wall time |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for row in results:
        settings = row.settings
        model = f"{settings['preset']} x{settings['layers']} @ {settings['image_size']}px"
        lines.append(
            f"| {row.kind} | {row.recipe} | {row.start} | {model} | {settings['total_steps']} | "
            f"{row.test_accuracy:.1%} | {row.wall_time_s / 60:.1f} min |"
        )
    return "\n".join(lines)


@contextmanager
def data_root(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="folder-recipe-") as temporary:
        yield Path(temporary)


def _value(text: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    return tuple(value) if isinstance(value, list) else value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated kinds")
    parser.add_argument(
        "--recipes",
        default=",".join(DEFAULT_RECIPES),
        help=f"comma-separated, of {', '.join(RECIPES)}",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a choose_recipe argument in every recipe (JSON value), e.g. layers=4",
    )
    parser.add_argument(
        "--finetune",
        action="store_true",
        help="also fine-tune the first kind's model on each other kind (whole, head only)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, help="keep the generated folders here")
    parser.add_argument("--quick", action="store_true", help="tiny folders and runs (< 1 min)")
    parser.add_argument("--avx2", action="store_true", help="hold the kernels to AVX2")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Generate the folders, run the recipes, print the table; 0 iff every ``auto`` run of
    the full benchmark met the target (always 0 with ``--quick``)."""
    args = parse_args(argv)
    if args.avx2:
        hold_to_avx2(Path(__file__))
    kinds = args.kinds.split(",")
    names = args.recipes.split(",")
    for value, known, what in ((kinds, KINDS, "kind"), (names, RECIPES, "recipe")):
        unknown = [item for item in value if item not in known]
        if unknown:
            raise SystemExit(f"unknown {what}(s) {unknown}; choose from {list(known)}")
    overrides = {key: _value(text) for key, text in (item.split("=", 1) for item in args.set)}
    spec = FolderSpec()
    if args.quick:
        spec = FolderSpec(train_per_class=12, test_per_class=4, min_side=24, max_side=48)
        overrides = {"epochs": 2, "layers": 1, **overrides}
    info = machine()
    print(f"machine: {machine_line(info)}", flush=True)
    results: list[RunResult] = []
    with data_root(args.data_dir) as root:
        folders = {kind: make_folder(root, kind, spec, args.seed) for kind in kinds}
        source: vitlib.ViT | None = None
        for kind in kinds:
            for name in names:
                recipe = recipe_for(folders[kind], name, overrides)
                if name == names[0]:
                    print(f"{kind}: {recipe.explanation}", flush=True)
                result, model = run(folders[kind], kind, name, recipe, seed=args.seed)
                results.append(result)
                if kind == kinds[0] and name == "auto":
                    source = model
        if args.finetune:
            results += finetune(folders, kinds, overrides, source, args.seed)
    print(markdown(results))
    met = [
        row.test_accuracy >= TARGET_ACCURACY and row.wall_time_s <= TIME_BUDGET_S
        for row in results
        if row.recipe == "auto" and row.start == "scratch"
    ]
    print(
        f"target (>= {TARGET_ACCURACY:.0%} in <= {TIME_BUDGET_S / 60:.0f} min): "
        f"{sum(met)} of {len(met)} auto runs"
    )
    if args.json is not None:
        report = {
            "machine": info,
            "seed": args.seed,
            "folders": asdict(spec),
            "overrides": {
                key: list(v) if isinstance(v, tuple) else v for key, v in overrides.items()
            },
            "runs": [asdict(row) for row in results],
        }
        args.json.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return 0 if args.quick or all(met) else 1


def finetune(
    folders: Mapping[str, Path],
    kinds: list[str],
    overrides: Mapping[str, Any],
    source: vitlib.ViT | None,
    seed: int,
) -> list[RunResult]:
    """Fine-tune the first kind's ``auto`` model on each other kind: whole, and head only
    (training from scratch is the ``auto`` row of that kind)."""
    if source is None:
        source, _, _ = train(
            folders[kinds[0]], recipe_for(folders[kinds[0]], "auto", overrides), seed=seed
        )
    results = []
    for kind in kinds[1:]:
        recipe = recipe_for(folders[kind], "auto", overrides)
        for start in ("whole", "head only"):
            result, _ = run(
                folders[kind],
                kind,
                "auto",
                recipe,
                seed=seed,
                start=f"{start}" if start == "head only" else f"from {kinds[0]}",
                source=source,
            )
            results.append(result)
    return results


if __name__ == "__main__":
    sys.exit(main())
