"""``vitlib demo``: the page's classification equals ``vitlib.predict``, over HTTP and in a real
browser; the exported folder serves the same model on its own; nothing is shared.

The servers run in subprocesses on 127.0.0.1 (a free port), called with ``gradio_client``; the
browser test drives Debian's ``chromium`` through Playwright (``executable_path``).
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import pytest
import torch
import yaml  # type: ignore[import-untyped]
from PIL import Image

import vitlib
from vitlib.checkpoints import attach_metadata
from vitlib.cli.demo import register
from vitlib.cli.options import Parser
from vitlib.data import Preprocessing
from vitlib.demo import DemoModel, app, build_demo, export_demo, run_examples
from vitlib.demo.export import MAX_EXPORTED_EXAMPLES
from vitlib.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    InputTypeError,
    MissingExtraError,
)

from .helpers import ROOT, tiny_vit
from .image_helpers import write_image, write_image_folder

gradio = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

LABELS: Final = ["red", "green", "blue"]
#: How the tiny models' images are prepared (squashed to 16x16, ImageNet's mean and std).
PREPARED: Final = Preprocessing((16, 16), resize="squash", crop_ratio=1.0)
#: How long a server may take to answer its first request.
STARTUP_SECONDS: Final = 120
#: The command line, as ``vitlib.cli.main`` runs it, with ``demo`` registered.
CLI: Final = (
    "import sys\n"
    "from vitlib.cli import demo\n"
    "from vitlib.cli.options import Parser\n"
    "parser = Parser(prog='vitlib')\n"
    "demo.register(parser.add_subparsers(dest='command', required=True))\n"
    "args = parser.parse_args(sys.argv[1:])\n"
    "sys.exit(args.handler(args))\n"
)


def demo_command(argv: list[str]) -> Any:
    """``vitlib demo ...`` parsed as the command line parses it: the handler's arguments."""
    parser = Parser(prog="vitlib")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["demo", *argv])


def saved_model(folder: Path, *, seed: int = 0) -> Path:
    """A tiny 3-class model with its labels and preprocessing, saved into ``folder``."""
    model = tiny_vit(seed, num_classes=len(LABELS))
    attach_metadata(model, labels=LABELS, preprocessing=PREPARED)
    return vitlib.save_pretrained(model, folder)


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    """A training run as ``vitlib train`` leaves it: ``best/`` and ``settings.json``, whose data
    folder has a ``test/`` split of one folder per class."""
    data = write_image_folder(tmp_path / "data" / "test", per_class=2).parent
    write_image_folder(tmp_path / "data" / "train", per_class=1)
    run = tmp_path / "runs" / "colours"
    saved_model(run / "best")
    selection = {
        "split": "validation",
        "source": "held out of train/: 10% of each class, seed 0",
        "data": str(data.resolve()),
        "folder": str((data / "train").resolve()),
        "held_out": [],
    }
    # --data as typed, relative to where the run was started; the selection's is absolute
    settings = {"--data": "data", "--epochs": 1, "model_selection": selection}
    (run / "settings.json").write_text(json.dumps(settings))
    return run


def data_folder(run: Path) -> Path:
    """The data folder of the run ``run``, as its settings record it."""
    return Path(json.loads((run / "settings.json").read_text())["model_selection"]["data"])


def label_format(prediction: vitlib.Prediction) -> dict[str, Any]:
    """A ``vitlib.predict`` result as ``gradio_client`` returns a ``gr.Label`` output."""
    return {
        "label": prediction.label,
        "confidences": [
            {"label": label, "confidence": probability}
            for label, probability in zip(prediction.labels, prediction.probabilities, strict=True)
        ],
    }


# --- the model behind the page ----------------------------------------------------------------


def test_the_confidences_are_vitlibs_predict_on_the_same_file(tmp_path: Path) -> None:
    checkpoint = saved_model(tmp_path / "checkpoint")
    served = DemoModel(checkpoint, top_k=2)
    for path in sorted(write_image_folder(tmp_path / "images", per_class=1).rglob("*.png")):
        (expected,) = vitlib.predict(checkpoint, path, top_k=2)
        top = served.confidences(path)
        assert list(top) == list(expected.labels)
        assert list(top.values()) == list(expected.probabilities)


def test_a_model_without_recorded_preprocessing_warns_once_and_still_equals_predict(
    tmp_path: Path,
) -> None:
    checkpoint = vitlib.save_pretrained(tiny_vit(num_classes=3), tmp_path / "bare")
    image = write_image(tmp_path / "image.png", (200, 30, 30), (24, 20), seed=1)
    with pytest.warns(UserWarning, match="records no preprocessing"):
        served = DemoModel(checkpoint)
    with pytest.warns(UserWarning, match="records no preprocessing"):
        (expected,) = vitlib.predict(checkpoint, image)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not once per image
        top = served.confidences(image)
    assert list(top.items()) == list(zip(expected.labels, expected.probabilities, strict=True))
    assert set(top) == {"0", "1", "2"}  # no names recorded: the class indices


def test_top_k_is_checked_and_capped_at_the_classes(tmp_path: Path) -> None:
    checkpoint = saved_model(tmp_path / "checkpoint")
    assert DemoModel(checkpoint, top_k=10).top_k == len(LABELS)
    with pytest.raises(ConfigError, match="top_k must be an int >= 1, got 0"):
        DemoModel(checkpoint, top_k=0)
    with pytest.raises(InputTypeError, match="top_k must be an int >= 1, got '3'"):
        DemoModel(checkpoint, top_k="3")  # type: ignore[arg-type]


def test_a_model_without_a_head_is_refused() -> None:
    with pytest.raises(DataError, match="no classification head"):
        DemoModel(tiny_vit(num_classes=0))


def test_an_unreadable_image_is_a_data_error(tmp_path: Path) -> None:
    served = DemoModel(saved_model(tmp_path / "checkpoint"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"broken\.png"):
        served.confidences(broken)
    with pytest.raises(DataError):
        served.rollout(broken)


def test_the_rollout_picture_shows_the_three_panels_of_figure_6(tmp_path: Path) -> None:
    served = DemoModel(saved_model(tmp_path / "checkpoint"))
    image = write_image(tmp_path / "image.png", (30, 200, 40), (30, 20), seed=2)
    drawn = Path(tempfile.gettempdir())
    before = set(drawn.glob("vitlib-demo-*"))
    picture = served.rollout(image)
    assert isinstance(picture, Image.Image)
    assert picture.width > 2 * picture.height  # input, rollout, input x rollout side by side
    assert set(drawn.glob("vitlib-demo-*")) == before  # nothing left behind


def test_a_prediction_waits_for_a_rollout_in_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rollout hooks the model's attention blocks while it runs: a prediction made meanwhile
    (gradio serves from several threads) would go through the hooks."""
    served = DemoModel(saved_model(tmp_path / "checkpoint"))
    image = write_image(tmp_path / "image.png", (30, 200, 40), (16, 16), seed=3)
    predicted: list[dict[str, float]] = []
    meanwhile = threading.Thread(target=lambda: predicted.append(served.confidences(image)))

    def slow_rollout(model: vitlib.ViT, images: torch.Tensor) -> torch.Tensor:
        meanwhile.start()
        meanwhile.join(timeout=1.0)
        assert predicted == []  # the prediction waits
        return torch.ones(len(images), 4, 4)

    monkeypatch.setattr(app, "rollout_map", slow_rollout)
    served.rollout(image)
    meanwhile.join(timeout=30)
    assert len(predicted) == 1  # and then runs


# --- the page ---------------------------------------------------------------------------------


def test_the_page_has_one_public_predict_endpoint_with_a_label_output(tmp_path: Path) -> None:
    demo = build_demo(saved_model(tmp_path / "checkpoint"), top_k=2, title="Colours")
    public = [
        dependency
        for dependency in demo.config["dependencies"]
        if dependency["api_visibility"] == "public"
    ]
    assert [dependency["api_name"] for dependency in public] == ["predict"]
    outputs = [demo.blocks[index] for index in public[0]["outputs"]]
    assert [type(block).__name__ for block in outputs] == ["Label", "State"]
    assert outputs[0].get_config()["num_top_classes"] == 2
    assert demo.title == "Colours"


def test_nothing_is_reported_to_gradio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "True")
    demo = build_demo(saved_model(tmp_path / "checkpoint"))
    assert demo.analytics_enabled is False
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"


def test_examples_and_title_are_checked(tmp_path: Path) -> None:
    checkpoint = saved_model(tmp_path / "checkpoint")
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        build_demo(checkpoint, examples=[tmp_path / "missing.png"])
    with pytest.raises(InputTypeError, match="examples must be a list of image file paths"):
        build_demo(checkpoint, examples=str(tmp_path))  # a str is a sequence, of letters
    with pytest.raises(InputTypeError, match=r"examples\[0\] must be an image file path"):
        build_demo(checkpoint, examples=[3])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="title must be a non-empty string"):
        build_demo(checkpoint, title="  ")


def test_without_gradio_the_error_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = saved_model(tmp_path / "checkpoint")
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r'pip install "vitlib\[demo\]"'):
        build_demo(checkpoint)
    with pytest.raises(MissingExtraError, match="demo"):
        export_demo(checkpoint, tmp_path / "export")
    assert not (tmp_path / "export").exists()


# --- the examples -----------------------------------------------------------------------------


def test_the_examples_are_the_first_image_of_each_test_class(run_folder: Path) -> None:
    test = data_folder(run_folder) / "test"
    expected = [test / "blue" / "0.png", test / "green" / "0.png", test / "red" / "0.png"]
    assert run_examples(run_folder) == expected
    assert run_examples(run_folder / "best") == expected  # the run's checkpoint itself
    assert run_examples(run_folder, 2) == expected[:2]
    assert run_examples(run_folder, 0) == []


def test_an_unreadable_test_image_is_passed_over(run_folder: Path) -> None:
    data = data_folder(run_folder)
    (data / "test" / "blue" / "0.png").write_bytes(b"not an image")
    assert run_examples(run_folder)[0] == data / "test" / "blue" / "1.png"


def test_no_examples_without_a_test_folder(tmp_path: Path, run_folder: Path) -> None:
    assert run_examples(saved_model(tmp_path / "checkpoint")) == []  # no run
    assert run_examples("hf-hub:someone/model") == []
    settings = run_folder / "settings.json"
    recorded = json.loads(settings.read_text())
    shutil.rmtree(data_folder(run_folder) / "test")
    assert run_examples(run_folder) == []  # the data lost its test/
    recorded["model_selection"]["data"] = "digits"
    settings.write_text(json.dumps(recorded))
    assert run_examples(run_folder) == []


def test_an_older_run_is_found_by_its_data_option(run_folder: Path) -> None:
    settings = run_folder / "settings.json"
    recorded = json.loads(settings.read_text())
    recorded["--data"] = recorded.pop("model_selection")["data"]
    settings.write_text(json.dumps(recorded))
    assert [path.parent.name for path in run_examples(run_folder)] == ["blue", "green", "red"]


def test_a_damaged_settings_file_is_named(run_folder: Path) -> None:
    settings = run_folder / "settings.json"
    recorded = json.loads(settings.read_text())
    recorded["model_selection"]["data"] = 3
    settings.write_text(json.dumps(recorded))
    with pytest.raises(CheckpointError, match=r"settings\.json records the data folder as 3"):
        run_examples(run_folder)
    settings.write_text("[]")
    with pytest.raises(CheckpointError, match="must hold a JSON object"):
        run_examples(run_folder)


def test_run_examples_checks_its_arguments(run_folder: Path) -> None:
    with pytest.raises(InputTypeError, match="source must be a run folder or checkpoint path"):
        run_examples(3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="count must be an int >= 0, got -1"):
        run_examples(run_folder, -1)


# --- the export -------------------------------------------------------------------------------


def front_matter(readme: Path) -> dict[str, Any]:
    """The YAML front matter of a Hugging Face Space's README.md."""
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    matter: dict[str, Any] = yaml.safe_load(text.split("---\n")[1])
    return matter


def test_the_export_holds_app_requirements_readme_model_and_examples(
    tmp_path: Path, run_folder: Path
) -> None:
    examples = run_examples(run_folder)
    folder = export_demo(
        run_folder, tmp_path / "export", examples=examples, top_k=2, title='Colours: "RGB"'
    )
    assert sorted(entry.name for entry in folder.iterdir()) == [
        "README.md",
        "app.py",
        "config.json",
        "example-1.png",
        "example-2.png",
        "example-3.png",
        "model.safetensors",
        "requirements.txt",
    ]
    assert (folder / "example-1.png").read_bytes() == examples[0].read_bytes()
    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert f"vitlib[demo]=={vitlib.__version__}" in requirements
    assert front_matter(folder / "README.md") == {
        "title": 'Colours: "RGB"',
        "sdk": "gradio",
        "sdk_version": gradio.__version__,
        "app_file": "app.py",
        "pinned": False,
    }
    compile((folder / "app.py").read_text(), "app.py", "exec")
    image = examples[1]
    assert vitlib.predict(folder, image, top_k=3) == vitlib.predict(run_folder, image, top_k=3)


def test_an_export_without_examples_builds_its_page(tmp_path: Path) -> None:
    folder = export_demo(saved_model(tmp_path / "checkpoint"), tmp_path / "export", top_k=2)
    assert not list(folder.glob("example-*"))
    exported = runpy.run_path(str(folder / "app.py"), run_name="exported")  # not __main__
    assert exported["EXAMPLES"] == []
    assert isinstance(exported["demo"], gradio.Blocks)
    assert exported["demo"].title == "vitlib demo"


def test_an_export_is_never_replaced_silently(tmp_path: Path, run_folder: Path) -> None:
    folder = tmp_path / "export"
    export_demo(run_folder, folder, examples=run_examples(run_folder))
    (folder / "notes.txt").write_text("mine")
    before = {entry.name: entry.read_bytes() for entry in folder.iterdir()}
    with pytest.raises(FileExistsError, match="not empty; nothing was written"):
        export_demo(run_folder, folder, title="Other")
    assert {entry.name: entry.read_bytes() for entry in folder.iterdir()} == before
    export_demo(run_folder, folder, examples=run_examples(run_folder, 1), overwrite=True)
    names = sorted(entry.name for entry in folder.iterdir())
    assert "example-1.png" in names
    assert "example-2.png" not in names  # the old export's, removed
    assert (folder / "notes.txt").read_text() == "mine"  # the user's, kept


def test_the_export_checks_its_examples(tmp_path: Path, run_folder: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(ConfigError, match=r"suffix '\.txt', not an image's"):
        export_demo(run_folder, tmp_path / "export", examples=[text])
    many = [run_examples(run_folder, 1)[0]] * (MAX_EXPORTED_EXAMPLES + 1)
    with pytest.raises(ConfigError, match=f"at most {MAX_EXPORTED_EXAMPLES}"):
        export_demo(run_folder, tmp_path / "export", examples=many)
    with pytest.raises(InputTypeError, match="overwrite must be a bool"):
        export_demo(run_folder, tmp_path / "export", overwrite="yes")  # type: ignore[arg-type]
    assert not (tmp_path / "export").exists()


# --- the command ------------------------------------------------------------------------------


def test_the_command_exports_with_the_runs_examples_and_name(
    tmp_path: Path, run_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "export"
    args = demo_command([str(run_folder), "--export", str(folder), "--top-k", "2"])
    assert args.handler(args) == 0
    assert f"demo in {folder}" in capsys.readouterr().out
    assert front_matter(folder / "README.md")["title"] == "colours"
    assert "top_k=2" in (folder / "app.py").read_text()
    assert len(list(folder.glob("example-*.png"))) == 3


def test_the_command_refuses_a_full_export_folder_before_any_work(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    args = demo_command([str(tmp_path / "no-such-run"), "--export", str(folder)])
    with pytest.raises(ConfigError, match=r"--export .* is not empty; pass --overwrite"):
        args.handler(args)


def test_the_command_checks_the_port_before_loading_the_model(tmp_path: Path) -> None:
    args = demo_command([str(tmp_path / "no-such-run"), "--port", "70000"])
    with pytest.raises(ConfigError, match="--port must be an int >= 1 and <= 65535, got 70000"):
        args.handler(args)
    with pytest.raises(ConfigError, match="--port: must be an int >= 1"):
        demo_command(["run", "--port", "0"])


def test_the_command_serves_this_machine_only_by_default() -> None:
    args = demo_command(["run"])
    assert (args.host, args.port, args.top_k) == ("127.0.0.1", None, 5)


# --- the servers ------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 at this moment."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def server_environment(**extra: str) -> dict[str, str]:
    """The environment of a server: this repository's vitlib, this process's torch threads
    (so that its float sums are those of ``vitlib.predict`` here)."""
    environment = dict(os.environ)
    source = str(ROOT / "src")
    environment["PYTHONPATH"] = os.pathsep.join(
        [source, *filter(None, [environment.get("PYTHONPATH")])]
    )
    environment["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    return {**environment, **extra}


@contextmanager
def served(
    command: list[str], port: int, log: Path, *, cwd: Path, env: Mapping[str, str]
) -> Iterator[str]:
    """Run ``command`` (a server on ``port``) until the block ends; yield its URL once it
    answers. Its output goes to ``log``, shown if it fails to start."""
    url = f"http://127.0.0.1:{port}/"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command, cwd=cwd, env=dict(env), stdout=output, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while True:
                if process.poll() is not None:
                    pytest.fail(f"the server stopped ({process.returncode}):\n{log.read_text()}")
                try:
                    with urllib.request.urlopen(url, timeout=5) as response:
                        if response.status == 200:
                            break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"no answer from {url} in {STARTUP_SECONDS} s:\n{log.read_text()}")
                time.sleep(0.5)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def demo_server(run: Path, log: Path, *extra: str) -> Iterator[str]:
    """``vitlib demo RUN --port <free>`` in a subprocess; yields its URL."""
    port = free_port()
    command = [sys.executable, "-c", CLI, "demo", str(run), "--port", str(port), *extra]
    with served(command, port, log, cwd=log.parent, env=server_environment()) as url:
        yield url


def client(url: str) -> Any:
    """A ``gradio_client.Client`` of the server at ``url``."""
    return gradio_client.Client(url, verbose=False)


@pytest.mark.slow
def test_the_predict_endpoint_equals_vitlib_predict_over_http(
    tmp_path: Path, run_folder: Path
) -> None:
    images = sorted(write_image_folder(tmp_path / "photos", per_class=1, seed=7).rglob("*.png"))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(images[0].read_bytes()[:80])  # a header PIL opens, then no pixels
    with demo_server(run_folder, tmp_path / "server.log", "--top-k", "2") as url:
        demo = client(url)
        for image in images:
            result = demo.predict(gradio_client.handle_file(str(image)), api_name="/predict")
            (expected,) = vitlib.predict(run_folder, image, top_k=2)
            assert result == label_format(expected)
        with pytest.raises(gradio_client.exceptions.AppError, match="cannot read image"):
            demo.predict(gradio_client.handle_file(str(truncated)), api_name="/predict")
    assert "serving 'colours' at http://127.0.0.1:" in (tmp_path / "server.log").read_text()


@pytest.mark.slow
def test_the_exported_folder_serves_the_model_on_its_own(tmp_path: Path, run_folder: Path) -> None:
    folder = export_demo(run_folder, tmp_path / "export", examples=run_examples(run_folder))
    port = free_port()
    environment = server_environment(GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1")
    command = [sys.executable, "app.py"]
    with served(command, port, tmp_path / "app.log", cwd=folder, env=environment) as url:
        image = folder / "example-2.png"
        result = client(url).predict(gradio_client.handle_file(str(image)), api_name="/predict")
    (expected,) = vitlib.predict(folder, image)
    assert result == label_format(expected)


#: Where Chromium usually is on ``PATH`` (Debian's package is ``chromium``).
CHROMIUM_NAMES: Final = ("chromium", "chromium-browser", "google-chrome")


def launch_chromium(sync_api: Any, playwright: Any) -> Any:
    """A headless Chromium: ``$VITLIB_CHROMIUM``, else the first of ``CHROMIUM_NAMES`` on
    ``PATH``, else Playwright's own (``playwright install chromium``); the test is skipped,
    saying how to get one, where there is none."""
    named = os.environ.get("VITLIB_CHROMIUM") or next(
        filter(None, map(shutil.which, CHROMIUM_NAMES)), None
    )
    sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []  # as root, Chromium insists
    try:
        return playwright.chromium.launch(executable_path=named, args=sandbox)
    except sync_api.Error:
        if named is not None:
            raise
        pytest.skip(
            "no Chromium to drive: install Debian's (apt-get install chromium), or Playwright's "
            "(playwright install chromium), or set VITLIB_CHROMIUM to a Chromium executable"
        )


@pytest.mark.slow
def test_a_browser_uploads_an_image_and_reads_the_top_label(
    tmp_path: Path, run_folder: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    image = run_examples(run_folder)[1]
    (expected,) = vitlib.predict(run_folder, image)
    screenshot = tmp_path / "demo.png"
    requests: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = launch_chromium(sync_api, playwright)
        try:
            with demo_server(run_folder, tmp_path / "server.log") as url:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.on("request", lambda request: requests.append(request.url))
                page.goto(url)
                page.set_input_files("input[type=file]", str(image))
                top = page.wait_for_selector("[data-testid=label-output-value]", timeout=60_000)
                assert top is not None
                page.get_by_text("attention rollout:").wait_for(timeout=60_000)
                page.wait_for_timeout(1000)  # the overlay fades in
                page.screenshot(path=str(screenshot), full_page=True)
                shown = top.inner_text().strip()
        finally:
            browser.close()
    assert shown == expected.label
    assert screenshot.stat().st_size > 10_000
    elsewhere = [address for address in requests if not address.startswith((url, "data:", "blob:"))]
    assert elsewhere == []  # the page needs no network
