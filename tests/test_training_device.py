"""A device the machine lacks is refused at once, by the one rule (``resolve_device``), naming
the device, why it is missing and what to use instead; the accelerators are simulated, so the
tests say the same on a machine with or without them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

import vitlib
from tests.helpers import tiny_vit
from tests.training_helpers import loaders, tiny_net
from vitlib.errors import ConfigError, InputTypeError
from vitlib.training import evaluate, fit, train_one_epoch


@pytest.fixture
def no_cuda_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU-only PyTorch."""
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def _fit(device: Any, output_dir: Path | None = None) -> None:
    fit(tiny_net(), *loaders(), epochs=1, progress=False, device=device, output_dir=output_dir)


def test_cuda_on_a_cpu_only_pytorch_is_refused_before_the_run_folder_is_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    _fit(None, run)
    before = (run / "last" / "training_state.pt").read_bytes()
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError) as refused:  # overwrite=True: the old run stays all the same
        fit(tiny_net(), *loaders(), epochs=1, device="cuda", output_dir=run, overwrite=True)
    message = str(refused.value)
    assert message.startswith("device='cuda' needs CUDA, but this PyTorch (")
    assert "was built without CUDA support" in message
    assert "Use device='cpu' (or leave it None" in message
    assert (run / "last" / "training_state.pt").read_bytes() == before


def test_cuda_without_a_gpu_says_no_device_is_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"no CUDA device is available on this machine"):
        _fit(torch.device("cuda"))


@pytest.mark.usefixtures("two_gpus")
def test_a_gpu_index_beyond_the_machines_gpus_is_refused_naming_them() -> None:
    with pytest.raises(
        ConfigError, match=r"device='cuda:2' names CUDA device 2, but this machine has 2 "
    ) as refused:
        _fit("cuda:2")
    assert "(cuda:0, cuda:1)" in str(refused.value)


@pytest.mark.parametrize(("built", "why"), [(False, "built without MPS"), (True, "no MPS device")])
def test_mps_where_it_is_missing_is_refused(
    monkeypatch: pytest.MonkeyPatch, built: bool, why: str
) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_built", lambda: built)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=rf"device='mps' needs MPS, but .*{why}.*Apple"):
        _fit("mps")


@pytest.mark.parametrize(
    ("device", "error", "expected"),
    [
        ("gpu", ConfigError, "device must name a device such as 'cpu', 'cuda', 'cuda:1' or 'mps'"),
        (0, InputTypeError, "device must be a device such as 'cpu' or 'cuda', or None, got 0"),
    ],
)
def test_a_device_that_is_no_device_is_refused(
    device: Any, error: type[Exception], expected: str
) -> None:
    with pytest.raises(error, match=expected):
        _fit(device)


def _image(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.new("RGB", (16, 16), (200, 30, 30)).save(path)
    return path


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.randn(2, 8), torch.tensor([0, 1]))]


CALLS: dict[str, Callable[[Path], object]] = {
    "predict": lambda tmp: vitlib.predict(tiny_vit(), [_image(tmp)], device="cuda"),
    "evaluate_model": lambda tmp: vitlib.evaluate_model(
        tiny_vit(in_channels=1, num_classes=10), "digits", device="cuda"
    ),
    "evaluate": lambda tmp: evaluate(tiny_net(), _batches(), device="cuda"),
    "train_one_epoch": lambda tmp: train_one_epoch(
        (net := tiny_net()),
        _batches(),
        torch.optim.SGD(net.parameters(), lr=0.1),
        device="cuda",
        progress=False,
    ),
}


@pytest.mark.usefixtures("no_cuda_build")
@pytest.mark.filterwarnings("ignore:the model records no preprocessing")
@pytest.mark.parametrize("call", CALLS, ids=list(CALLS))
def test_every_entry_point_that_takes_a_device_refuses_a_missing_one(
    tmp_path: Path, call: str
) -> None:
    with pytest.raises(ConfigError, match=r"^device='cuda' needs CUDA"):
        CALLS[call](tmp_path)
