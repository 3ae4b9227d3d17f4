"""Hub names, resolved offline against locally prepared caches (no network in tests; the
downloads themselves are tested against loopback servers in test_checkpoints_network.py)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vitlib import CheckpointError, load_pretrained, save_pretrained
from vitlib.checkpoints.hub import TORCHVISION_WEIGHTS, cache_path, resolve

from .helpers import FIXTURES


@pytest.fixture
def offline_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, with the hub client forced offline.

    huggingface_hub is imported here, so that without it only the hf-hub tests skip, not the
    torch.hub ones (CI fails on any skip).
    """
    hub_constants = pytest.importorskip(
        "huggingface_hub.constants", reason="vitlib[hub] is in the dev requirements"
    )
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    return cache


def _put_in_cache(cache: Path, repo: str, files: Path) -> None:
    """Lay out ``files`` as huggingface_hub's cache stores a downloaded snapshot of ``repo``."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    shutil.copytree(files, root / "snapshots" / commit)


def test_hf_hub_name_loads_from_the_local_cache(offline_hf_cache: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = load_pretrained(FIXTURES / "timm_token" / "state_dict.safetensors", num_heads=3)
    save_pretrained(model, tmp_path / "snapshot", format="huggingface")
    _put_in_cache(offline_hf_cache, "someone/tiny-vit", tmp_path / "snapshot")
    loaded = load_pretrained("hf-hub:someone/tiny-vit").eval()
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(loaded(images), model.eval()(images), atol=1e-6, rtol=1e-6)


def test_hf_hub_timm_repository_with_its_config(offline_hf_cache: Path, tmp_path: Path) -> None:
    snapshot = tmp_path / "timm-snapshot"
    snapshot.mkdir()
    shutil.copy(FIXTURES / "timm_token" / "state_dict.safetensors", snapshot / "model.safetensors")
    (snapshot / "config.json").write_text(
        json.dumps({"architecture": "vit_tiny_patch8_32", "num_classes": 5})
    )
    _put_in_cache(offline_hf_cache, "timm/vit_tiny_patch8_32.random", snapshot)
    # timm's config names the architecture; its size letter gives num_heads (3 for Ti)
    model = load_pretrained("hf-hub:timm/vit_tiny_patch8_32.random").eval()
    assert model.config.num_heads == 3
    io = load_file(str(FIXTURES / "timm_token" / "io.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(model(io["input"]), io["logits"], atol=1e-5, rtol=1e-5)


def test_hf_hub_name_missing_from_the_cache_is_a_clear_error(offline_hf_cache: Path) -> None:
    with pytest.raises(
        CheckpointError, match=r"'someone/absent' is not in the local Hugging Face cache"
    ):
        load_pretrained("hf-hub:someone/absent")


def test_hf_hub_name_must_be_owner_slash_name() -> None:
    with pytest.raises(CheckpointError, match="expected 'hf-hub:<owner>/<name>"):
        load_pretrained("hf-hub:no-owner")


@pytest.fixture
def torch_hub_dir(tmp_path: Path) -> Iterator[Path]:
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torch-hub"))
    yield tmp_path / "torch-hub"
    torch.hub.set_dir(previous)


def test_weight_url_loads_from_the_torch_hub_cache(torch_hub_dir: Path) -> None:
    url = "https://example.invalid/models/tiny_vit-0123abcd.pth"
    cached = cache_path(url)
    assert cached.parent == torch_hub_dir / "checkpoints"
    cached.parent.mkdir(parents=True)
    state = load_file(str(FIXTURES / "torchvision_plain" / "state_dict.safetensors"))
    torch.save(state, cached)
    model = load_pretrained(url, num_heads=3)
    io = load_file(str(FIXTURES / "torchvision_plain" / "io.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(io["input"]), io["logits"], atol=1e-5, rtol=1e-5)


def test_torchvision_names_resolve_to_the_cached_file_and_image_size(
    torch_hub_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert TORCHVISION_WEIGHTS["vit_h_14"] == ("vit_h_14_swag-80465313.pth", 518)
    assert TORCHVISION_WEIGHTS["vit_b_16"] == ("vit_b_16-c867db91.pth", 224)
    # a real torchvision file is too big for the tests: one named, like them, by its sha256
    body = b"placeholder"
    name = f"vit_test-{hashlib.sha256(body).hexdigest()[:8]}.pth"
    monkeypatch.setitem(TORCHVISION_WEIGHTS, "vit_test", (name, 518))
    checkpoints = torch_hub_dir / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / name).write_bytes(body)
    path, hints = resolve("torchvision:vit_test")
    assert path == checkpoints / name  # torchvision's own file name: its downloads are reused
    assert hints == {"img_size": 518}


def test_torchvision_file_not_matching_its_hash_is_refused(torch_hub_dir: Path) -> None:
    checkpoints = torch_hub_dir / "checkpoints"
    checkpoints.mkdir(parents=True)
    impostor = checkpoints / "vit_b_16-c867db91.pth"
    state = load_file(str(FIXTURES / "torchvision_plain" / "state_dict.safetensors"))
    torch.save(state, impostor)
    actual = hashlib.sha256(impostor.read_bytes()).hexdigest()[:8]
    with pytest.raises(CheckpointError) as caught:
        load_pretrained("torchvision:vit_b_16", num_heads=3)
    assert str(caught.value) == (
        f"{impostor} does not match the hash in its name: expected a sha256 starting with "
        f"'c867db91', got '{actual}'; delete {impostor} to download it again."
    )


def test_urls_are_cached_under_a_name_made_from_the_whole_url(torch_hub_dir: Path) -> None:
    site_a = cache_path("https://site-a.example/x/model.pth")
    site_b = cache_path("https://site-b.example/y/model.pth")
    assert site_a != site_b
    assert site_a.name == (
        hashlib.sha256(b"https://site-a.example/x/model.pth").hexdigest()[:16] + "-model.pth"
    )
    assert site_b.name.endswith("-model.pth")
    # the probe's case (K12h): files cached for another URL ending in model.pth, under the new
    # name and under the old basename-only one, are not returned for this URL; it is fetched
    # (from a loopback port nothing listens on, so it fails at once and offline)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/y/model.pth"
    site_a.parent.mkdir(parents=True)
    site_a.write_bytes(b"site A's weights")
    (site_a.parent / "model.pth").write_bytes(b"site A's weights, cached by an older vitlib")
    with pytest.raises(
        CheckpointError, match=rf"put the file at {re.escape(str(cache_path(url)))}"
    ):
        resolve(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "ftp://example.com/x.pth",
            r"expected an http:// or https:// URL.*'ftp://example.com/x.pth'",
        ),
        ("https://example.com/", r"ends in a weights file name.*'https://example.com/'"),
        ("https://example.com", r"ends in a weights file name.*'https://example.com'"),
    ],
)
def test_urls_that_are_not_http_weight_files_are_refused(url: str, expected: str) -> None:
    with pytest.raises(CheckpointError, match=expected):
        resolve(url)


def test_unknown_torchvision_name_suggests() -> None:
    with pytest.raises(CheckpointError, match=r"unknown torchvision weights 'vit_b16'.*'vit_b_16'"):
        load_pretrained("torchvision:vit_b16")
