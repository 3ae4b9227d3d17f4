"""``vitlib demo RUN_OR_CHECKPOINT``: a trained model behind a web page (Gradio), served on this
machine, or written with ``--export DIR`` as a folder that serves it anywhere."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Final

from vitlib._checks import check_int
from vitlib.cli.options import COUNT, NON_NEGATIVE, add_command
from vitlib.errors import ConfigError

#: The address served unless ``--host`` says otherwise: this machine only.
LOCAL_HOST: Final = "127.0.0.1"
_LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "::1"})


def register(commands: Any) -> None:
    """Add the subcommand to ``commands`` (the parser's subparsers)."""
    from vitlib.demo.examples import DEFAULT_EXAMPLES

    parser = add_command(
        commands,
        "demo",
        run,
        "a web page that classifies images with a trained model (Gradio), or its folder",
        "Serve a web page (Gradio, pip install 'vitlib[demo]') where one drops or picks an "
        "image and sees the model's top classes, the attention rollout and the time taken; its "
        "/predict API endpoint gives the same classes. Nothing is shared and no analytics are "
        "sent. With --export DIR, write a folder that serves it anywhere (pip install -r "
        "requirements.txt && python app.py), a Hugging Face Space as it is.",
    )
    parser.add_argument(
        "model",
        metavar="RUN_OR_CHECKPOINT",
        help="a run folder (its best/; examples from its test/ images), a checkpoint folder or "
        "file, hf-hub:<repo>...",
    )
    parser.add_argument(
        "--host",
        default=LOCAL_HOST,
        help="the address to serve on; 0.0.0.0 serves the whole network",
    )
    parser.add_argument(
        "--port", type=COUNT, help="the port to serve on; default: the first free one from 7860"
    )
    parser.add_argument("--top-k", type=COUNT, default=5, help="classes shown per image")
    parser.add_argument(
        "--examples",
        type=NON_NEGATIVE,
        default=DEFAULT_EXAMPLES,
        help="example images from the run's test/ folder, one per class; 0 for none",
    )
    parser.add_argument("--title", help="the page's title; default: the run's name")
    parser.add_argument(
        "--export",
        type=Path,
        metavar="DIR",
        help="write the demo's folder (app.py, requirements.txt, README.md, the model, the "
        "examples) instead of serving it",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an export in --export")


def run(args: argparse.Namespace) -> int:
    """Serve the page until Ctrl-C, or write the ``--export`` folder."""
    from vitlib.demo import DemoModel, build_demo, export_demo, launch_demo, run_examples
    from vitlib.demo.app import require_gradio

    if args.export is not None:
        _check_export_folder(args.export, args.overwrite)
    if args.port is not None:
        check_int("--port", args.port, minimum=1, maximum=65535)
    require_gradio()  # before the model is loaded
    title = args.title if args.title is not None else _title(args.model)
    examples = run_examples(args.model, args.examples)
    served = DemoModel(args.model, top_k=args.top_k)
    if args.export is not None:
        folder = export_demo(
            served.model,
            args.export,
            examples=examples,
            top_k=served.top_k,
            title=title,
            overwrite=args.overwrite,
        )
        written = ", ".join(sorted(entry.name for entry in folder.iterdir()))
        print(f"demo in {folder}: {written}")
        print(f"run it: cd {folder} && pip install -r requirements.txt && python app.py")
        return 0
    if args.host not in _LOOPBACK:
        print(
            f"vitlib demo: serving on {args.host}: other machines on the network can reach the "
            "page",
            file=sys.stderr,
        )
    launch_demo(build_demo(served, examples=examples, title=title), host=args.host, port=args.port)
    return 0


def _check_export_folder(folder: Path, overwrite: bool) -> None:
    """Refuse, before any work, to write into a folder that holds anything, unless
    ``--overwrite``; in the command's words."""
    from vitlib.files import recover_interrupted_save

    if folder.is_dir():
        recover_interrupted_save(folder)
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise ConfigError(
            f"--export {folder} is not empty; pass --overwrite to replace the demo there (other "
            "files are kept), or choose another folder"
        )


def _title(source: str) -> str:
    """The page's default title: the run's (or checkpoint's) name."""
    from vitlib.checkpoints.run_folder import BEST, LAST
    from vitlib.demo.app import DEFAULT_TITLE

    path = Path(source).resolve() if not source.startswith(("hf-hub:", "torchvision:")) else None
    if path is None:
        return source.rsplit(":", 1)[-1].rsplit("/", 1)[-1] or DEFAULT_TITLE
    if path.is_file() or path.name in (BEST, LAST):
        path = path.parent
    return path.name or DEFAULT_TITLE
