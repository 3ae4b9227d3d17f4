"""Downloads of hub names against loopback servers that each test starts and stops itself.

Nothing here leaves 127.0.0.1. Servers that stall are bounded twice: the client timeouts are set
to about a second, and every call runs under :func:`_within`, which fails the test (instead of
hanging the suite) if the call is still running after :data:`DEADLINE` seconds; the server's
teardown then closes its sockets, which ends the abandoned call.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import pytest
import torch
from safetensors.torch import load_file

from vitlib import (
    CheckpointError,
    Preprocessing,
    attach_metadata,
    load_pretrained,
    model_metadata,
    save_pretrained,
)
from vitlib.checkpoints import hub

from .helpers import FIXTURES

#: Seconds after which a call that should have timed out (after about 1 s) counts as a hang.
DEADLINE = 15.0
T = TypeVar("T")


def _within(call: Callable[[], T], seconds: float = DEADLINE) -> T:
    """Run ``call`` in a thread; its result or exception, or a test failure if it hangs."""
    values: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            values.append(call())
        except BaseException as error:  # handed to the test thread
            errors.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"still running after {seconds} s: the timeout does not work")
    if errors:
        raise errors[0]
    return values[0]


@contextmanager
def _stalled_server() -> Iterator[int]:
    """A port whose server accepts connections and never answers (closed on exit)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.05)
    stop = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        deadline = time.monotonic() + 2 * DEADLINE
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        for connection in held:
            connection.close()
        listener.close()


@contextmanager
def _raw_server(reply: bytes, *, then_stall: bool) -> Iterator[int]:
    """Answers one connection with ``reply`` (raw bytes), then stalls or closes it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(2 * DEADLINE)
    stop = threading.Event()

    def serve() -> None:
        try:
            connection = listener.accept()[0]
        except OSError:
            return
        with connection:
            connection.recv(65536)
            connection.sendall(reply)
            if then_stall:
                stop.wait(2 * DEADLINE)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        thread.join(5)


Route = tuple[int, dict[str, str], bytes]


@contextmanager
def _http_server(
    routes: Callable[[str, str], Route | None],
) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A loopback HTTP server answering ``routes(method, path)`` (404 when it gives None).

    Yields the base URL and the list of requests (method, path) it received.
    """
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, with_body: bool) -> None:
            seen.append((self.command, self.path))
            route = routes(self.command, self.path)
            status, headers, body = route if route is not None else (404, {}, b"not found")
            self.send_response(status)
            headers = {"Content-Length": str(len(body)), **headers}
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer(with_body=True)

        def do_HEAD(self) -> None:
            self._answer(with_body=False)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def torch_hub_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty torch.hub folder, and 1-second download timeouts."""
    monkeypatch.setenv("VITLIB_DOWNLOAD_TIMEOUT", "1")
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torch-hub"))
    yield tmp_path / "torch-hub"
    torch.hub.set_dir(previous)


def _weights_bytes(tmp_path: Path, seed: int) -> bytes:
    """A torchvision-layout state dict saved with torch.save, perturbed by ``seed``."""
    state = load_file(str(FIXTURES / "torchvision_plain" / "state_dict.safetensors"))
    generator = torch.Generator().manual_seed(seed)
    state = {k: v + torch.randn(v.shape, generator=generator) * 0.01 for k, v in state.items()}
    path = tmp_path / f"weights-{seed}.pth"
    torch.save(state, path)
    return path.read_bytes()


def _files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# -- URL downloads (K12j, K12h) ------------------------------------------------------------------


def test_a_stalled_server_times_out_with_a_clear_error(torch_hub_dir: Path) -> None:
    with _stalled_server() as port:
        url = f"http://127.0.0.1:{port}/model.pth"
        start = time.monotonic()
        with pytest.raises(CheckpointError) as caught:
            _within(lambda: load_pretrained(url))
        elapsed = time.monotonic() - start
    message = str(caught.value)
    assert url in message
    assert "no answer within 1 s" in message
    assert "VITLIB_DOWNLOAD_TIMEOUT" in message
    assert f"put the file at {hub.cache_path(url)}" in message
    assert elapsed < DEADLINE
    assert _files_in(torch_hub_dir / "checkpoints") == []  # no partial file left behind


def test_a_download_stalling_midway_leaves_nothing_in_the_cache(torch_hub_dir: Path) -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000
    with _raw_server(reply, then_stall=True) as port:
        url = f"http://127.0.0.1:{port}/weights/model.pth"
        with pytest.raises(CheckpointError, match=r"no answer within 1 s"):
            _within(lambda: hub.resolve(url))
    assert _files_in(torch_hub_dir / "checkpoints") == []


def test_a_truncated_download_is_not_cached(torch_hub_dir: Path) -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000
    with _raw_server(reply, then_stall=False) as port:
        url = f"http://127.0.0.1:{port}/model.pth"
        with pytest.raises(CheckpointError, match=r"closed before the whole file.*99000 bytes"):
            _within(lambda: hub.resolve(url))
    assert _files_in(torch_hub_dir / "checkpoints") == []


def test_an_http_error_names_the_url_and_status(torch_hub_dir: Path) -> None:
    with _http_server(lambda method, path: None) as (base, _):
        url = f"{base}/missing/model.pth"
        with pytest.raises(CheckpointError) as caught:
            _within(lambda: hub.resolve(url))
    assert f"cannot download {url}: the server answered HTTP 404" in str(caught.value)
    assert _files_in(torch_hub_dir / "checkpoints") == []


def test_a_refused_connection_is_named(torch_hub_dir: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on once this is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/model.pth"
    with pytest.raises(CheckpointError, match=rf"cannot download {re.escape(url)}: connection"):
        _within(lambda: hub.resolve(url))


def test_urls_ending_in_the_same_file_name_do_not_share_a_cache_file(
    torch_hub_dir: Path, tmp_path: Path
) -> None:
    bodies = {"/site-a/model.pth": _weights_bytes(tmp_path, 1)}
    bodies["/site-b/model.pth"] = _weights_bytes(tmp_path, 2)

    def routes(method: str, path: str) -> Route | None:
        return (200, {}, bodies[path]) if path in bodies else None

    with _http_server(routes) as (base, seen):
        first = _within(lambda: load_pretrained(f"{base}/site-a/model.pth", num_heads=3))
        second = _within(lambda: load_pretrained(f"{base}/site-b/model.pth", num_heads=3))
        again = _within(lambda: load_pretrained(f"{base}/site-a/model.pth", num_heads=3))
    assert seen == [("GET", "/site-a/model.pth"), ("GET", "/site-b/model.pth")]  # then cached
    norm = "norm.weight"
    assert not torch.equal(first.state_dict()[norm], second.state_dict()[norm])
    torch.testing.assert_close(again.state_dict(), first.state_dict(), rtol=0, atol=0)
    cached = hub.cache_path(f"{base}/site-a/model.pth")
    assert cached.read_bytes() == bodies["/site-a/model.pth"]
    assert re.fullmatch(r"[0-9a-f]{16}-model\.pth", cached.name)
    assert _files_in(torch_hub_dir / "checkpoints") == sorted(
        [cached.name, hub.cache_path(f"{base}/site-b/model.pth").name]
    )


def test_redirects_are_followed_only_to_http(torch_hub_dir: Path, tmp_path: Path) -> None:
    body = _weights_bytes(tmp_path, 3)

    def routes(method: str, path: str) -> Route | None:
        if path == "/moved/model.pth":
            return 302, {"Location": "/real/model.pth"}, b""
        if path == "/real/model.pth":
            return 200, {}, body
        if path == "/to-file/model.pth":
            return 302, {"Location": "ftp://127.0.0.1/model.pth"}, b""
        if path.startswith("/loop/model.pth"):  # a new URL each time: only the cap stops it
            return 302, {"Location": path + "x"}, b""
        return None

    with _http_server(routes) as (base, seen):
        path, _hints = _within(lambda: hub.resolve(f"{base}/moved/model.pth"))
        assert path.read_bytes() == body
        with pytest.raises(
            CheckpointError, match=r"redirects to 'ftp://127.0.0.1/model.pth'.*only http://"
        ):
            _within(lambda: hub.resolve(f"{base}/to-file/model.pth"))
        with pytest.raises(CheckpointError, match=r"cannot download .*/loop/model.pth: .*302"):
            _within(lambda: hub.resolve(f"{base}/loop/model.pth"))
    assert sum(path.startswith("/loop/") for _, path in seen) == 1 + hub.MAX_REDIRECTS
    assert _files_in(torch_hub_dir / "checkpoints") == [path.name]


def test_the_timeout_variable_must_be_a_positive_number(
    torch_hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VITLIB_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(CheckpointError, match=r"VITLIB_DOWNLOAD_TIMEOUT.*seconds > 0.*'soon'"):
        hub.resolve("http://127.0.0.1:9/model.pth")


# -- torchvision hash check (K12i) ----------------------------------------------------------------


def test_torchvision_downloads_are_checked_against_the_hash_in_their_name(
    torch_hub_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = _weights_bytes(tmp_path, 4)
    digest = hashlib.sha256(body).hexdigest()
    good, bad = f"vit_tiny-{digest[:8]}.pth", "vit_tiny-00000000.pth"
    monkeypatch.setitem(hub.TORCHVISION_WEIGHTS, "vit_tiny", (good, 32))
    monkeypatch.setitem(hub.TORCHVISION_WEIGHTS, "vit_tiny.other", (bad, 32))

    def routes(method: str, path: str) -> Route | None:
        return (200, {}, body) if path in (f"/models/{good}", f"/models/{bad}") else None

    with _http_server(routes) as (base, _):
        monkeypatch.setattr(hub, "_TORCHVISION_URL", f"{base}/models/")
        path, hints = _within(lambda: hub.resolve("torchvision:vit_tiny"))
        assert (path, hints) == (torch_hub_dir / "checkpoints" / good, {"img_size": 32})
        with pytest.raises(CheckpointError) as caught:
            _within(lambda: hub.resolve("torchvision:vit_tiny.other"))
    message = str(caught.value)
    assert f"{base}/models/{bad}" in message
    assert f"expected a sha256 starting with '00000000', got '{digest[:8]}'" in message
    assert _files_in(torch_hub_dir / "checkpoints") == [good]  # the bad download was dropped


# -- Hugging Face Hub (K12k, K12m) ----------------------------------------------------------------


def _hub_constants() -> ModuleType:
    """huggingface_hub's constants; without the library only the Hub tests skip (fail in CI)."""
    constants: ModuleType = pytest.importorskip(
        "huggingface_hub.constants", reason="vitlib[hub] is in the dev requirements"
    )
    return constants


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _point_hub_at(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What ``HF_ENDPOINT=<endpoint>`` sets when huggingface_hub is imported."""
    monkeypatch.setattr(_hub_constants(), "ENDPOINT", endpoint)
    template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(_hub_constants(), "HUGGINGFACE_CO_URL_TEMPLATE", template)


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, online, with 1-second timeouts."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(_hub_constants(), "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(_hub_constants(), "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(_hub_constants(), "HF_HUB_ETAG_TIMEOUT", 1)
    monkeypatch.setattr(_hub_constants(), "HF_HUB_DOWNLOAD_TIMEOUT", 1)
    _point_hub_at("http://127.0.0.1:9", monkeypatch)  # never the internet; tests set their own
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return cache


def test_hf_hub_a_stalled_endpoint_times_out_with_a_clear_error(
    hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _stalled_server() as port:
        _point_hub_at(f"http://127.0.0.1:{port}", monkeypatch)
        start = time.monotonic()
        with pytest.raises(CheckpointError) as caught:
            _within(lambda: load_pretrained("hf-hub:someone/tiny-vit"))
        elapsed = time.monotonic() - start
    message = str(caught.value)
    assert "'someone/tiny-vit'" in message
    assert f"127.0.0.1:{port}" in message
    assert "no answer within the timeout" in message
    assert "HF_HUB_OFFLINE=1" in message
    assert "HF_HUB_ETAG_TIMEOUT" in message
    assert elapsed < DEADLINE


def _hf_snapshot(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = load_pretrained(FIXTURES / "timm_token" / "state_dict.safetensors", num_heads=3)
    save_pretrained(model, tmp_path / "snapshot", format="huggingface")
    return tmp_path / "snapshot", model


def test_hf_hub_a_stalled_endpoint_falls_back_to_the_cached_copy(
    hf_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot, model = _hf_snapshot(tmp_path)
    root = hf_cache / "models--someone--tiny-vit"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)
    (root / "snapshots").mkdir()
    (snapshot).rename(root / "snapshots" / COMMIT)
    with _stalled_server() as port:
        _point_hub_at(f"http://127.0.0.1:{port}", monkeypatch)
        loaded = _within(lambda: load_pretrained("hf-hub:someone/tiny-vit"))
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded.eval()(images), model.eval()(images))


def _fake_hub(files: dict[str, bytes]) -> Callable[[str, str], Route | None]:
    """Routes of a minimal Hugging Face Hub serving one repository, ``someone/tiny-vit``."""
    info = {"id": "someone/tiny-vit", "sha": COMMIT, "siblings": [{"rfilename": n} for n in files]}

    def routes(method: str, path: str) -> Route | None:
        path = path.split("?")[0]
        if path in ("/api/models/someone/tiny-vit", "/api/models/someone/tiny-vit/revision/main"):
            return 200, {"Content-Type": "application/json"}, json.dumps(info).encode()
        prefix = "/someone/tiny-vit/resolve/"
        if path.startswith(prefix):
            revision, _, name = path.removeprefix(prefix).partition("/")
            if revision in ("main", COMMIT) and name in files:
                body = files[name]
                etag = hashlib.sha256(body).hexdigest()
                return 200, {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"'}, body
        if path.startswith("/api/models/"):
            return 404, {"X-Error-Code": "RepoNotFound"}, b"Repository not found"
        return None

    return routes


def test_hf_hub_downloads_only_safetensors_when_the_repo_has_both(
    hf_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot, model = _hf_snapshot(tmp_path)
    files = {p.name: p.read_bytes() for p in snapshot.iterdir()}
    files["pytorch_model.bin"] = b"a second copy that must not be downloaded"
    files["README.md"] = b"# tiny"
    with _http_server(_fake_hub(files)) as (base, seen):
        _point_hub_at(base, monkeypatch)
        folder, _ = _within(lambda: hub.resolve("hf-hub:someone/tiny-vit"))
    fetched = {path.rsplit("/", 1)[-1] for method, path in seen if "/resolve/" in path}
    assert fetched == {"model.safetensors", "config.json"}
    assert _files_in(folder) == ["config.json", "model.safetensors"]
    loaded = load_pretrained(folder).eval()
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(images), model.eval()(images))
    # what was fetched is cached under the branch name: it loads offline afterwards
    monkeypatch.setattr(_hub_constants(), "HF_HUB_OFFLINE", True)
    assert hub.resolve("hf-hub:someone/tiny-vit")[0] == folder


def test_hf_hub_fetches_the_preprocessor_config_beside_the_weights(
    hf_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Hugging Face repository's preprocessor_config.json says how to prepare images; a hub
    load reads it as a local load of the same folder does."""
    torch.manual_seed(0)
    model = load_pretrained(FIXTURES / "timm_token" / "state_dict.safetensors", num_heads=3)
    spec = Preprocessing((32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, resize="squash", crop_ratio=1.0)
    attach_metadata(model, preprocessing=spec)
    save_pretrained(model, tmp_path / "snapshot", format="huggingface")
    files = {p.name: p.read_bytes() for p in (tmp_path / "snapshot").iterdir()}
    assert "preprocessor_config.json" in files
    with _http_server(_fake_hub(files)) as (base, seen):
        _point_hub_at(base, monkeypatch)
        loaded = _within(lambda: load_pretrained("hf-hub:someone/tiny-vit"))
    fetched = {path.rsplit("/", 1)[-1] for method, path in seen if "/resolve/" in path}
    assert fetched == {"model.safetensors", "config.json", "preprocessor_config.json"}
    assert model_metadata(loaded).preprocessing == spec
    assert model_metadata(loaded) == model_metadata(load_pretrained(tmp_path / "snapshot"))


def test_hf_hub_falls_back_to_pytorch_model_bin(
    hf_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot, model = _hf_snapshot(tmp_path)
    torch.save(load_file(str(snapshot / "model.safetensors")), tmp_path / "pytorch_model.bin")
    files = {
        "config.json": (snapshot / "config.json").read_bytes(),
        "pytorch_model.bin": (tmp_path / "pytorch_model.bin").read_bytes(),
    }
    with _http_server(_fake_hub(files)) as (base, seen):
        _point_hub_at(base, monkeypatch)
        folder, _ = _within(lambda: hub.resolve("hf-hub:someone/tiny-vit"))
    fetched = {path.rsplit("/", 1)[-1] for method, path in seen if "/resolve/" in path}
    assert fetched == {"pytorch_model.bin", "config.json"}
    assert _files_in(folder) == ["config.json", "pytorch_model.bin"]
    loaded = load_pretrained(folder).eval()
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(images), model.eval()(images))


def test_hf_hub_repo_without_weights_is_a_clear_error(
    hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {"config.json": b"{}", "flax_model.msgpack": b"..."}
    with _http_server(_fake_hub(files)) as (base, seen):
        _point_hub_at(base, monkeypatch)
        with pytest.raises(CheckpointError, match=r"'someone/tiny-vit' has neither.*flax_model"):
            _within(lambda: hub.resolve("hf-hub:someone/tiny-vit"))
    assert not any("/resolve/" in path for _, path in seen)


def test_hf_hub_unknown_repo_names_the_repo(
    hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _http_server(_fake_hub({})) as (base, _):
        _point_hub_at(base, monkeypatch)
        with pytest.raises(
            CheckpointError, match=r"(?s)cannot fetch 'someone/absent'.*Check the name"
        ):
            _within(lambda: hub.resolve("hf-hub:someone/absent"))
