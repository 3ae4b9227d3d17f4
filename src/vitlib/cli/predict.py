"""``vitlib predict RUN_OR_CHECKPOINT IMAGE...``: a trained model's top classes for your images."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from vitlib.cli.options import COUNT, add_command, add_inference_options
from vitlib.errors import ConfigError

if TYPE_CHECKING:
    from vitlib.inference.predict import Prediction, Predictions

_PLOTTED_IMAGES: Final = 16
#: The longest file name a plot title shows whole (a picture is about 2 inches wide).
_TITLE_CHARACTERS: Final = 28


def register(commands: Any) -> None:
    """Add the subcommand to ``commands`` (the parser's subparsers)."""
    parser = add_command(
        commands,
        "predict",
        run,
        "classify your own images with a trained model (its labels and preprocessing)",
        "Classify images with a run or checkpoint, prepared as its test set was.",
    )
    parser.add_argument(
        "model",
        metavar="RUN_OR_CHECKPOINT",
        help="a run folder (its best/), a checkpoint folder or file, hf-hub:<repo>...",
    )
    parser.add_argument(
        "images", metavar="IMAGE", nargs="+", type=Path, help="image files, or folders of them"
    )
    parser.add_argument("--top-k", type=COUNT, default=5, help="classes shown per image")
    parser.add_argument("--batch-size", type=COUNT, default=32, help="images per forward pass")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="OUT.png",
        help=f"draw the images (the first {_PLOTTED_IMAGES}), each titled with its file name, "
        "predicted class and probability",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    add_inference_options(parser)


def run(args: argparse.Namespace) -> int:
    """Print the predictions (and draw them with ``--plot``); 2 when no image could be read."""
    from vitlib.inference.predict import Predictions, iter_predict

    if args.plot is not None:  # before any work: refuse to replace a file silently
        _check_plot_path(args.plot, args.overwrite)
    stream = iter_predict(  # printed as each batch is classified: flat memory for any count
        args.model,
        args.images,
        top_k=args.top_k,
        batch_size=args.batch_size,
        strict=args.strict,
        precision=args.precision,
        num_workers=args.num_workers,
        progress=True,  # a bar on a terminal only: nothing in a pipe or a log
    )
    plotted = Predictions(stream.preprocessing)
    count = 0
    if args.json:
        print('{"predictions": [', end="")
    for prediction in stream:
        if len(plotted) < _PLOTTED_IMAGES:
            plotted.append(prediction)
        if args.json:
            item = json.dumps(prediction.to_dict(), allow_nan=False)
            print(("," if count else "") + f"\n  {item}", end="", flush=True)
        else:
            print(_line(prediction), flush=True)
        count += 1
    for skipped in stream.skipped:
        print(f"vitlib predict: skipped {skipped.source}: {skipped.reason}", file=sys.stderr)
    if args.json:
        unread = [{"source": s.source, "reason": s.reason} for s in stream.skipped]
        print(f'\n], "skipped": {json.dumps(unread, allow_nan=False)}}}')
    if args.plot is not None and plotted:
        out = _plot(plotted, args.plot, args.overwrite)
        print(f"plot: {out}", file=sys.stderr if args.json else sys.stdout)
    if not count:
        print("vitlib predict: error: no readable image among those given", file=sys.stderr)
        return 2
    return 0


def _line(prediction: Prediction) -> str:
    """``source: label (p%)  then other p%, ...``."""
    others = ", ".join(
        f"{label} {probability:.1%}"
        for label, probability in zip(
            prediction.labels[1:], prediction.probabilities[1:], strict=True
        )
    )
    return f"{prediction.source}: {prediction.label} ({prediction.probability:.1%})" + (
        f"  then {others}" if others else ""
    )


def _plot(run: Predictions, path: Path, overwrite: bool) -> Path:
    """Draw the first images of ``run`` as the model saw them, each titled with its file name
    above ``label (p%)``, into ``path``."""
    import torch

    from vitlib.analysis.plots import plot_image_predictions
    from vitlib.data.image_folder import open_image

    shown = run[:_PLOTTED_IMAGES]
    transform = run.preprocessing.transform()
    images = [
        transform(open_image(Path(prediction.source), run.preprocessing)) for prediction in shown
    ]
    names = _titles([Path(prediction.source) for prediction in shown])
    return plot_image_predictions(
        torch.stack(images),
        [f"{name}\n{prediction.label}" for name, prediction in zip(names, shown, strict=True)],
        [prediction.probability for prediction in shown],
        path,
        mean=run.preprocessing.mean,
        std=run.preprocessing.std,
        overwrite=overwrite,
    )


def _titles(paths: Sequence[Path]) -> list[str]:
    """A short name for each image of the plot: its file name, with its folder where two files
    of the plot share a name, shortened in the middle to fit above a picture."""
    counts = Counter(path.name for path in paths)
    names = [
        f"{path.parent.name}/{path.name}" if counts[path.name] > 1 else path.name for path in paths
    ]
    return [_shortened(name) for name in names]


def _shortened(name: str) -> str:
    if len(name) <= _TITLE_CHARACTERS:
        return name
    keep = _TITLE_CHARACTERS - 1  # one character for the ellipsis
    return f"{name[: keep - keep // 2]}\u2026{name[-(keep // 2) :]}"


def _check_plot_path(path: Path, overwrite: bool) -> None:
    if path.suffix.lower() != ".png":
        raise ConfigError(f"--plot {path} must end in .png; give e.g. --plot predictions.png")
    if path.exists() and not overwrite:
        raise ConfigError(f"--plot {path} already exists; pass --overwrite to replace it")
