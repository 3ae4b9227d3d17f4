"""Hub names: ``"hf-hub:<repo>[@revision]"`` (huggingface_hub, optional extra ``vitlib[hub]``),
``"torchvision:<name>"`` and ``http(s)`` URLs of weight files (``torch.hub``'s download cache).

Both use their library's cache, so a name that was downloaded once loads offline afterwards
(``HF_HUB_OFFLINE=1``; ``TORCH_HOME``).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlparse

import torch

from .._optional import missing_extra
from ..errors import CheckpointError

__all__ = ["TORCHVISION_WEIGHTS", "resolve"]

_TORCHVISION_URL = "https://download.pytorch.org/models/"
#: torchvision's ViT weights: name -> (file, image size). The SWAG end-to-end weights are at
#: higher resolution; the ``_lc_swag`` ("linear classifier") ones at 224.
TORCHVISION_WEIGHTS: Final[dict[str, tuple[str, int]]] = {
    "vit_b_16": ("vit_b_16-c867db91.pth", 224),
    "vit_b_16.swag_e2e": ("vit_b_16_swag-9ac1b537.pth", 384),
    "vit_b_16.swag_linear": ("vit_b_16_lc_swag-4e70ced5.pth", 224),
    "vit_b_32": ("vit_b_32-d86f8d99.pth", 224),
    "vit_l_16": ("vit_l_16-852ce7e3.pth", 224),
    "vit_l_16.swag_e2e": ("vit_l_16_swag-4f3808c9.pth", 512),
    "vit_l_16.swag_linear": ("vit_l_16_lc_swag-4d563306.pth", 224),
    "vit_l_32": ("vit_l_32-c7638314.pth", 224),
    "vit_h_14": ("vit_h_14_swag-80465313.pth", 518),
    "vit_h_14.swag_e2e": ("vit_h_14_swag-80465313.pth", 518),
    "vit_h_14.swag_linear": ("vit_h_14_lc_swag-c1eb923e.pth", 224),
}


def resolve(name: str) -> tuple[Path, dict[str, Any]]:
    """Turn a hub name into a local file or directory (downloading into the cache if needed)
    and the config hints the name implies."""
    if name.startswith("hf-hub:"):
        return _huggingface(name.removeprefix("hf-hub:")), {}
    if name.startswith("torchvision:"):
        return _torchvision(name.removeprefix("torchvision:"))
    return _download(name), {}


def _huggingface(spec: str) -> Path:
    repo, _, revision = spec.partition("@")
    if not repo or repo.count("/") != 1:
        raise CheckpointError(
            f"expected 'hf-hub:<owner>/<name>[@revision]', got 'hf-hub:{spec}'; "
            f"e.g. 'hf-hub:google/vit-base-patch16-224'."
        )
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError as error:
        raise missing_extra("huggingface_hub", "hub", "Loading 'hf-hub:' names") from error
    try:
        folder = snapshot_download(
            repo,
            revision=revision or None,
            allow_patterns=["config.json", "model.safetensors", "pytorch_model.bin"],
        )
    except LocalEntryNotFoundError as error:
        raise CheckpointError(
            f"'{repo}' is not in the local Hugging Face cache and cannot be downloaded "
            f"(offline or unreachable): {error}"
        ) from error
    except HfHubHTTPError as error:
        raise CheckpointError(
            f"cannot fetch '{repo}' from the Hugging Face Hub: {error}"
        ) from error
    return Path(folder)


def _torchvision(name: str) -> tuple[Path, dict[str, Any]]:
    if name not in TORCHVISION_WEIGHTS:
        close = difflib.get_close_matches(name, TORCHVISION_WEIGHTS, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise CheckpointError(
            f"unknown torchvision weights {name!r}.{hint} Known: {', '.join(TORCHVISION_WEIGHTS)}."
        )
    filename, img_size = TORCHVISION_WEIGHTS[name]
    return _download(_TORCHVISION_URL + filename), {"img_size": img_size}


def _download(url: str) -> Path:
    """The cached copy of ``url`` in ``torch.hub``'s checkpoint folder, fetched if missing."""
    parsed = urlparse(url)
    filename = os.path.basename(parsed.path)
    if parsed.scheme not in ("http", "https") or not filename:
        raise CheckpointError(f"expected an http(s) URL of a weights file, got {url!r}.")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(cached), progress=False)
        except (OSError, ValueError, RuntimeError) as error:
            raise CheckpointError(
                f"cannot download {url} ({error}); put the file at {cached} to load it offline."
            ) from error
    return cached
