"""``vitlib demo ... --export DIR``: a folder that serves the demo anywhere.

```text
app.py            builds the page from this folder and serves it (python app.py)
requirements.txt  vitlib[demo] at this vitlib's version
README.md         how to run it; its front matter makes the folder a Hugging Face Space
config.json       the model (save_pretrained's files)
model.safetensors
example-1.jpg ... the example images
```

``app.py`` serves on ``$GRADIO_SERVER_NAME:$GRADIO_SERVER_PORT`` (gradio's defaults,
127.0.0.1:7860, without them), which is what a Space sets. The folder is written at once
through [`write_files`][vitlib.files.write_files]: a folder that holds anything is refused
without ``overwrite``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from vitlib._checks import check_bool
from vitlib._version import __version__
from vitlib.checkpoints.pretrained import checkpoint_contents
from vitlib.checkpoints.weights import CONFIG_FILE, WEIGHTS_FILE, write_checkpoint_files
from vitlib.data.image_folder import IMAGE_EXTENSIONS
from vitlib.demo.app import (
    DEFAULT_TITLE,
    DEFAULT_TOP_K,
    DemoModel,
    check_title,
    example_files,
    require_gradio,
)
from vitlib.errors import ConfigError
from vitlib.files import write_files
from vitlib.vit import ViT

__all__ = ["APP_FILE", "MAX_EXPORTED_EXAMPLES", "README_FILE", "REQUIREMENTS_FILE", "export_demo"]

APP_FILE: Final = "app.py"
REQUIREMENTS_FILE: Final = "requirements.txt"
README_FILE: Final = "README.md"
#: The most example images an exported folder holds (``example-1`` to ``example-32``).
MAX_EXPORTED_EXAMPLES: Final = 32

#: Every name an export may write: on ``overwrite``, those the new export does not write go.
_OWNED: Final = frozenset(
    {APP_FILE, REQUIREMENTS_FILE, README_FILE, CONFIG_FILE, WEIGHTS_FILE}
    | {
        f"example-{number}{suffix}"
        for number in range(1, MAX_EXPORTED_EXAMPLES + 1)
        for suffix in IMAGE_EXTENSIONS
    }
)


def export_demo(
    model: ViT | str | os.PathLike[str],
    directory: str | os.PathLike[str],
    *,
    examples: Sequence[str | os.PathLike[str]] = (),
    top_k: int = DEFAULT_TOP_K,
    title: str = DEFAULT_TITLE,
    overwrite: bool = False,
) -> Path:
    """Write a folder that serves ``model``'s demo with ``pip install -r requirements.txt &&
    python app.py``, or as a Hugging Face Space.

    Args:
        model: A [`ViT`][vitlib.ViT] with a classification head, or anything
            [`load_pretrained`][vitlib.load_pretrained] reads.
        directory: The folder to write (created if missing).
        examples: Image files copied in as the page's examples (at most
            ``MAX_EXPORTED_EXAMPLES``), e.g. [`run_examples`][vitlib.demo.run_examples].
        top_k: Classes shown per image.
        title: The page's title (and the Space's).
        overwrite: Replace an export already in ``directory`` (other files there are kept).

    Returns:
        ``directory`` as a ``Path``.

    Raises:
        MissingExtraError: gradio is not installed (its version is the Space's
            ``sdk_version``).
        FileExistsError: ``directory`` holds anything and ``overwrite`` is False (nothing is
            written).
        ConfigError: More than ``MAX_EXPORTED_EXAMPLES`` examples, an example that is not an
            image file by its suffix, or as [`build_demo`][vitlib.demo.build_demo].
        InputTypeError, FileNotFoundError, CheckpointError: As
            [`build_demo`][vitlib.demo.build_demo].
    """
    served = DemoModel(model, top_k=top_k)
    files = _checked_examples(examples)
    heading = check_title(title)
    check_bool("overwrite", overwrite)
    require_gradio()
    import gradio

    tensors, json_files = checkpoint_contents(served.model)
    names = [f"example-{number}{path.suffix.lower()}" for number, path in enumerate(files, 1)]
    texts = {
        APP_FILE: app_source(names, top_k=served.top_k, title=heading),
        REQUIREMENTS_FILE: requirements_text(),
        README_FILE: readme_text(heading, served.describe(), gradio.__version__),
    }

    def write(staging: Path) -> None:
        write_checkpoint_files(staging, tensors, json_files)
        for name, source in zip(names, files, strict=True):
            shutil.copyfile(source, staging / name)
        for name, text in texts.items():
            (staging / name).write_text(text, encoding="utf-8")

    return write_files(
        directory, write, overwrite=overwrite, what="vitlib demo --export", owned=_OWNED
    )


def _checked_examples(
    examples: Sequence[str | os.PathLike[str]],
) -> list[Path]:
    files = example_files(examples)
    if len(files) > MAX_EXPORTED_EXAMPLES:
        raise ConfigError(
            f"examples has {len(files)} images; an export holds at most "
            f"{MAX_EXPORTED_EXAMPLES}. Pick fewer."
        )
    for path in files:
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise ConfigError(
                f"the example {path} has the suffix {path.suffix!r}, not an image's; expected "
                f"one of {', '.join(sorted(IMAGE_EXTENSIONS))}. Give image files."
            )
    return files


def app_source(examples: list[str], *, top_k: int, title: str) -> str:
    """The exported ``app.py``: the page of the model in its own folder, served on
    ``$GRADIO_SERVER_NAME:$GRADIO_SERVER_PORT``."""
    listed = "".join(f"\n    HERE / {json.dumps(name)}," for name in examples)
    listed += "\n" if examples else ""
    return f'''"""A vitlib demo, written by `vitlib demo --export` (vitlib {__version__}).

Run it with `pip install -r requirements.txt && python app.py`; it serves on
$GRADIO_SERVER_NAME:$GRADIO_SERVER_PORT (127.0.0.1:7860 without them).
"""

from pathlib import Path

from vitlib.demo import build_demo, launch_demo

HERE = Path(__file__).resolve().parent
EXAMPLES: list[Path] = [{listed}]

demo = build_demo(HERE, examples=EXAMPLES, top_k={top_k}, title={json.dumps(title)})

if __name__ == "__main__":
    launch_demo(demo)
'''


def requirements_text() -> str:
    """The exported ``requirements.txt``: this vitlib, with its demo extra."""
    return (
        f"# vitlib {__version__} with its demo extra (gradio, matplotlib, Pillow; torch comes "
        "with vitlib)\n"
        f"vitlib[demo]=={__version__}\n"
    )


def readme_text(title: str, about: str, gradio_version: str) -> str:
    """The exported ``README.md``, whose YAML front matter configures a Hugging Face Space."""
    return f"""---
title: {json.dumps(title)}
sdk: gradio
sdk_version: {gradio_version}
app_file: {APP_FILE}
pinned: false
---

# {title}

{about}

Drop an image or pick an example: the page shows the top classes, the attention rollout (how
much the prediction draws on each patch) and the time taken.

Written by `vitlib demo --export` (vitlib {__version__}).

## Run it

```bash
pip install -r requirements.txt
python app.py                                            # http://127.0.0.1:7860
GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=8080 python app.py   # the whole network
```

## Call it from code

```python
from gradio_client import Client, handle_file

client = Client("http://127.0.0.1:7860/")
result = client.predict(handle_file("photo.jpg"), api_name="/predict")
print(result["label"], result["confidences"])
```

## Publish it as a Hugging Face Space

The front matter above is the Space's configuration. Upload this folder to a new Space:

```python
from huggingface_hub import HfApi

api = HfApi()
api.create_repo("you/{_space_name(title)}", repo_type="space", space_sdk="gradio")
api.upload_folder(folder_path=".", repo_id="you/{_space_name(title)}", repo_type="space")
```
"""


def _space_name(title: str) -> str:
    """A repository name made from ``title``: lower case, words joined by ``-``."""
    words = "".join(char if char.isalnum() else " " for char in title.lower()).split()
    return "-".join(words) or "vitlib-demo"
