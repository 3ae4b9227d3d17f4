"""The demo page: a trained model behind a Gradio app.

```python
from vitlib.demo import build_demo, launch_demo, run_examples

demo = build_demo("runs/sports", examples=run_examples("runs/sports"), top_k=3)
launch_demo(demo, host="127.0.0.1", port=7860)
```

Drop or pick an image: the page shows its top-k classes (``gr.Label``'s bar chart), the
attention-rollout overlay (the paper's Fig. 6) and the time each took. The page's
classification is the ``/predict`` API endpoint: an image in, ``gr.Label``'s confidences out,
equal to [`vitlib.predict`][vitlib.predict] on the same image file. Nothing leaves the machine:
no share link, no analytics, the page served on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from vitlib._checks import (
    check_int,
    check_positive_int,
    check_sequence,
    check_type,
    type_error,
)
from vitlib._optional import missing_extra
from vitlib._runtime import resolve_device
from vitlib.analysis import rollout_map
from vitlib.analysis.figures import plot_attention_rollout
from vitlib.checkpoints.metadata import model_metadata
from vitlib.data.image_folder import open_image
from vitlib.errors import ConfigError, DataError
from vitlib.inference.predict import predict, resolve_model
from vitlib.vit import ViT

if TYPE_CHECKING:
    import gradio
    from PIL import Image

__all__ = [
    "API_NAME",
    "DEFAULT_TITLE",
    "DEFAULT_TOP_K",
    "MAX_UPLOAD",
    "DemoModel",
    "build_demo",
    "launch_demo",
    "require_gradio",
]

#: Classes shown per image unless told otherwise (as ``vitlib.predict``).
DEFAULT_TOP_K: Final = 5
#: The page's title unless told otherwise.
DEFAULT_TITLE: Final = "vitlib demo"
#: The name of the classification endpoint: ``client.predict(image, api_name="/predict")``.
API_NAME: Final = "predict"
#: The largest upload the server accepts.
MAX_UPLOAD: Final = "20mb"
#: Uploads are removed from gradio's cache once they are this old (seconds), checked as often.
_CACHE_SECONDS: Final = 3600
#: The height of the image boxes on the page, in pixels (small images are enlarged to it).
_IMAGE_HEIGHT: Final = 320
#: Class names listed in the page's header, at most.
_NAMES_SHOWN: Final = 12


def require_gradio() -> None:
    """Import gradio with its analytics off, or say which extra installs it.

    ``GRADIO_ANALYTICS_ENABLED=False`` is set before the import: gradio reads it in several
    places (the version check at start, the telemetry of launches and errors).

    Raises:
        MissingExtraError: gradio is not installed (``pip install "vitlib[demo]"``).
    """
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio  # noqa: F401
    except ImportError as error:
        raise missing_extra("gradio", "demo", "vitlib demo") from error


class DemoModel:
    """A model as the demo serves it: the top classes of an image file and its attention rollout.

    Args:
        model: A [`ViT`][vitlib.ViT] with a classification head, or anything
            [`load_pretrained`][vitlib.load_pretrained] reads (a run folder, a checkpoint).
        top_k: Classes per image; at most the model's classes are shown.

    Attributes:
        model: The model.
        top_k: Classes per image (at most the model's number of classes).
        preprocessing: How the images are prepared: the one ``vitlib.predict`` uses for this
            model (the recorded one, else the assumed one, with ``predict``'s warning, once).
    """

    def __init__(self, model: ViT | str | os.PathLike[str], *, top_k: int = DEFAULT_TOP_K) -> None:
        self.model = resolve_model(model)
        self.top_k = min(check_positive_int("top_k", top_k), self.model.config.num_classes)
        self.preprocessing = predict(self.model, []).preprocessing
        # One request at a time: the rollout hooks the model's attention blocks while it runs,
        # which would change a prediction made meanwhile (gradio serves from several threads).
        self._in_use = threading.Lock()

    def confidences(self, image: str | os.PathLike[str]) -> dict[str, float]:
        """The ``top_k`` classes of the image file ``image``, most probable first, as
        ``{label: probability}`` (what ``gr.Label`` shows), as ``vitlib.predict`` gives them.

        Raises:
            DataError: ``image`` is not an image file that can be read.
        """
        with self._in_use:
            (prediction,) = predict(
                self.model,
                Path(image),
                top_k=self.top_k,
                strict=True,
                preprocessing=self.preprocessing,
            )
        return dict(zip(prediction.labels, prediction.probabilities, strict=True))

    def rollout(self, image: str | os.PathLike[str]) -> Image.Image:
        """The prepared image beside its attention rollout and the two multiplied (Fig. 6), as
        [`plot_attention_rollout`][vitlib.analysis.figures.plot_attention_rollout] draws them.

        Raises:
            DataError: ``image`` is not an image file that can be read.
        """
        from PIL import Image

        prepared = self.preprocessing.transform()(open_image(Path(image), self.preprocessing))
        batch = prepared[None].to(resolve_device(self.model, None))
        with self._in_use:
            attention = rollout_map(self.model, batch)[0]
        spec = self.preprocessing
        with tempfile.TemporaryDirectory(prefix="vitlib-demo-") as folder:
            path = Path(folder, "rollout.png")
            plot_attention_rollout(prepared, attention, path, mean=spec.mean, std=spec.std)
            with Image.open(path) as picture:
                return picture.copy()

    def describe(self) -> str:
        """One line about the model: size, input, classes."""
        config = self.model.config
        labels = model_metadata(self.model).labels
        shown = ", ".join(labels[:_NAMES_SHOWN]) if labels else "unnamed (class indices)"
        more = ", ..." if labels and len(labels) > _NAMES_SHOWN else ""
        height, width = config.image_hw
        parameters = sum(parameter.numel() for parameter in self.model.parameters())
        return (
            f"A Vision Transformer of {parameters:,} parameters on {height}x{width} images, "
            f"{config.num_classes} classes: {shown}{more}."
        )


def build_demo(
    model: ViT | str | os.PathLike[str] | DemoModel,
    *,
    examples: Sequence[str | os.PathLike[str]] = (),
    top_k: int = DEFAULT_TOP_K,
    title: str = DEFAULT_TITLE,
) -> gradio.Blocks:
    """The demo page of ``model``, to launch with [`launch_demo`][vitlib.demo.launch_demo].

    Args:
        model: A [`ViT`][vitlib.ViT] with a classification head, anything
            [`load_pretrained`][vitlib.load_pretrained] reads, or a `DemoModel`.
        examples: Image files offered as examples (e.g.
            [`run_examples`][vitlib.demo.run_examples]).
        top_k: Classes shown per image (ignored for a `DemoModel`, which has its own).
        title: The page's title and heading.

    Returns:
        The ``gradio.Blocks``. Its ``/predict`` endpoint takes an image and returns the top
        ``top_k`` ``{label: probability}`` as ``gr.Label`` does (``gradio_client`` gives
        ``{"label": top, "confidences": [{"label", "confidence"}, ...]}``).

    Raises:
        MissingExtraError: gradio is not installed (``pip install "vitlib[demo]"``).
        InputTypeError: ``examples`` is not a list of paths, or ``title`` not a string.
        ConfigError: ``top_k`` is not an int >= 1, or ``title`` is empty.
        FileNotFoundError: An example file does not exist.
        CheckpointError, DataError: As ``vitlib.predict`` for ``model``.
    """
    served = model if isinstance(model, DemoModel) else DemoModel(model, top_k=top_k)
    files = example_files(examples)
    heading = check_title(title)
    require_gradio()
    import gradio as gr

    def classify(image: str | None) -> tuple[dict[str, float] | None, float]:
        if image is None:  # the image was cleared
            return None, 0.0
        start = time.perf_counter()
        try:
            top = served.confidences(image)
        except DataError as error:
            raise gr.Error(str(error)) from error
        return top, time.perf_counter() - start

    def explain(image: str | None, seconds: float) -> tuple[Image.Image | None, str]:
        if image is None:
            return None, ""
        start = time.perf_counter()
        picture = served.rollout(image)
        took = time.perf_counter() - start
        device = resolve_device(served.model, None)
        return picture, (
            f"Prediction: **{seconds * 1000:.1f} ms**, attention rollout: "
            f"{took * 1000:.1f} ms (on {device.type})."
        )

    demo = gr.Blocks(
        title=heading, analytics_enabled=False, delete_cache=(_CACHE_SECONDS, _CACHE_SECONDS)
    )
    with demo:
        gr.Markdown(f"# {heading}\n{served.describe()}")
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="filepath", label="Image", height=_IMAGE_HEIGHT)
                if files:
                    gr.Examples(examples=[[str(path)] for path in files], inputs=[image])
            with gr.Column():
                label = gr.Label(num_top_classes=served.top_k, label=f"Top {served.top_k}")
                timing = gr.Markdown("Drop an image, or pick an example.")
                overlay = gr.Image(
                    label="Attention rollout",
                    type="pil",
                    format="png",
                    interactive=False,
                    height=_IMAGE_HEIGHT,
                )
        seconds = gr.State(0.0)
        image.change(classify, inputs=image, outputs=[label, seconds], api_name=API_NAME).success(
            explain, inputs=[image, seconds], outputs=[overlay, timing], api_visibility="private"
        )
    return demo


def launch_demo(demo: gradio.Blocks, *, host: str | None = None, port: int | None = None) -> None:
    """Serve ``demo`` until interrupted (Ctrl-C), never shared; print where.

    Args:
        demo: What [`build_demo`][vitlib.demo.build_demo] returns.
        host: The address to serve on; ``None`` for ``$GRADIO_SERVER_NAME``, else 127.0.0.1
            (this machine only). ``"0.0.0.0"`` serves the whole network.
        port: The port; ``None`` for ``$GRADIO_SERVER_PORT``, else the first free one from 7860.

    Raises:
        InputTypeError: ``host`` is not a string or ``port`` not an int.
        ConfigError: ``port`` is not in 1..65535.
        OSError: The port is taken.
    """
    if host is not None:
        check_type("host", host, str, "an address such as '127.0.0.1' or '0.0.0.0'")
    if port is not None:
        check_int("port", port, minimum=1, maximum=65535)
    require_gradio()
    demo.launch(
        server_name=host,
        server_port=port,
        share=False,
        max_file_size=MAX_UPLOAD,
        quiet=True,  # its own lines suggest share=True; ours say where the page and API are
        prevent_thread_lock=True,
    )
    print(
        f"vitlib demo: serving {demo.title!r} at {demo.local_url} ('Use via API' at the page's "
        f"foot documents its /{API_NAME} endpoint); Ctrl-C stops it",
        flush=True,
    )
    demo.block_thread()


def example_files(examples: object) -> list[Path]:
    """The example paths, each an existing file."""
    items = check_sequence("examples", examples, "a list of image file paths")
    files = []
    for index, item in enumerate(items):
        if not isinstance(item, (str, os.PathLike)):
            raise type_error(f"examples[{index}]", item, "an image file path")
        path = Path(item)
        if not path.is_file():
            raise FileNotFoundError(
                f"the example image {path} is no file; give the paths of image files"
            )
        files.append(path)
    return files


def check_title(title: object) -> str:
    check_type("title", title, str, "a string")
    text = str(title).strip()
    if not text:
        raise ConfigError(f"title must be a non-empty string, got {title!r}; e.g. 'Sports'.")
    return text
