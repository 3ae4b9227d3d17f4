"""Hub names resolved to local files, each cached so that it loads offline afterwards:
``"hf-hub:<repo>[@revision]"`` (huggingface_hub, the ``vitlib[hub]`` extra, in Hugging Face's
own cache, fetching only what loading reads: the weights, ``config.json`` and the files a family
reads beside it, such as ``preprocessor_config.json``), ``"torchvision:<name>"`` (torchvision's
file names, so its downloads are reused) and ``http(s)`` URLs of weight files (both by
`vitlib.checkpoints.download`). "Downloads" in docs/pretrained.md tells the timeouts, the hash
checks and the offline fallback."""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from vitlib._checks import did_you_mean
from vitlib._optional import missing_extra
from vitlib.checkpoints.download import (
    DOWNLOAD_TIMEOUT,
    MAX_REDIRECTS,
    cache_path,
    checkpoint_folder,
    download,
)
from vitlib.errors import CheckpointError

__all__ = ["DOWNLOAD_TIMEOUT", "MAX_REDIRECTS", "TORCHVISION_WEIGHTS", "cache_path", "resolve"]

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

#: Weight files of a Hugging Face repository, in order of preference (as transformers prefers).
_HF_WEIGHTS: Final[tuple[str, ...]] = ("model.safetensors", "pytorch_model.bin")
_HF_CONFIG: Final[str] = "config.json"
_COMMIT = re.compile(r"[0-9a-f]{40}")


def resolve(name: str) -> tuple[Path, dict[str, Any]]:
    """Turn a hub name into a local file or directory, downloading it into the cache if needed.

    Args:
        name: ``"hf-hub:<owner>/<repo>[@revision]"``, ``"torchvision:<name>"`` or an
            ``http(s)`` URL of a weights file.

    Returns:
        The local file (or, for ``hf-hub:``, snapshot directory) and the config hints the name
        implies (``{"img_size": ...}`` for torchvision weights).

    Raises:
        CheckpointError: The name is malformed or unknown, the download failed or timed out, or
            a torchvision file does not match the hash in its name.
    """
    if name.startswith("hf-hub:"):
        return _huggingface(name.removeprefix("hf-hub:")), {}
    if name.startswith("torchvision:"):
        return _torchvision(name.removeprefix("torchvision:"))
    return download(name, cache_path(name)), {}


# -- torchvision ---------------------------------------------------------------------------------


def _torchvision(name: str) -> tuple[Path, dict[str, Any]]:
    if name not in TORCHVISION_WEIGHTS:
        hint = did_you_mean(name, TORCHVISION_WEIGHTS, n=3)
        raise CheckpointError(
            f"unknown torchvision weights {name!r}{hint}. Known: {', '.join(TORCHVISION_WEIGHTS)}."
        )
    filename, img_size = TORCHVISION_WEIGHTS[name]
    # torchvision's own file name, so that its downloads are reused; the hash in it protects it
    cached = checkpoint_folder() / filename
    expected = filename.rsplit(".", 1)[0].rpartition("-")[2]
    path = download(_TORCHVISION_URL + filename, cached, sha256_prefix=expected)
    return path, {"img_size": img_size}


# -- Hugging Face --------------------------------------------------------------------------------


def _huggingface(spec: str) -> Path:
    repo, _, revision = spec.partition("@")
    if not repo or repo.count("/") != 1:
        raise CheckpointError(
            f"expected 'hf-hub:<owner>/<name>[@revision]', got 'hf-hub:{spec}'; "
            f"e.g. 'hf-hub:google/vit-base-patch16-224'."
        )
    try:
        from huggingface_hub import HfApi, constants, hf_hub_download
    except ImportError as error:
        raise missing_extra("huggingface_hub", "hub", "Loading 'hf-hub:' names") from error
    if constants.HF_HUB_OFFLINE:
        cached = _hf_cached_snapshot(repo, revision or None)
        if cached is None:
            raise CheckpointError(
                f"'{repo}' is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) "
                f"and HF_HUB_OFFLINE is set, so it cannot be downloaded; load it once with "
                f"network access (HF_HUB_OFFLINE unset) to cache it."
            )
        return cached
    timeout = float(constants.HF_HUB_ETAG_TIMEOUT)
    api = HfApi()  # its endpoint (HF_ENDPOINT) is passed on, so every request goes to one place
    try:
        info = api.model_info(repo, revision=revision or None, timeout=timeout)
    except Exception as error:  # classified below; anything unexpected is re-raised there
        return _hf_unavailable(repo, revision or None, error)
    available = {sibling.rfilename for sibling in info.siblings or ()}
    weights = next((name for name in _HF_WEIGHTS if name in available), None)
    if weights is None:
        shown = ", ".join(sorted(available)[:12]) or "no files"
        raise CheckpointError(
            f"the Hugging Face repository '{repo}' has neither {' nor '.join(_HF_WEIGHTS)} at "
            f"its top level (it holds: {shown}); vitlib loads ViT weights from one of those."
        )
    fetch = functools.partial(hf_hub_download, endpoint=api.endpoint, etag_timeout=timeout)
    try:
        weights_path = Path(fetch(repo, weights, revision=revision or None))
        # The config and the files beside it that a family reads (Hugging Face's
        # preprocessor_config.json), pinned to the commit the weights came from.
        commit = weights_path.parent.name
        pinned = commit if _COMMIT.fullmatch(commit) else revision or None
        for name in (_HF_CONFIG, *_side_files()):
            if name in available:
                fetch(repo, name, revision=pinned)
    except Exception as error:  # classified below; anything unexpected is re-raised there
        return _hf_unavailable(repo, revision or None, error)
    return weights_path.parent


def _side_files() -> tuple[str, ...]:
    """The JSON files any family reads beside its ``config.json``."""
    from vitlib.checkpoints.families import FAMILIES

    formats = [family.config for family in FAMILIES.values() if family.config is not None]
    return tuple(dict.fromkeys(name for fmt in formats for name in fmt.side_files))


def _hf_cached_snapshot(repo: str, revision: str | None) -> Path | None:
    """The cached snapshot folder of ``repo`` holding weights, preferring safetensors."""
    from huggingface_hub import try_to_load_from_cache

    for weights in _HF_WEIGHTS:
        found = try_to_load_from_cache(repo, weights, revision=revision)
        if isinstance(found, str):
            return Path(found).parent
    return None


def _hf_unavailable(repo: str, revision: str | None, error: Exception) -> Path:
    """Use the cached copy when the Hub cannot be reached; otherwise a clear CheckpointError.

    Raises:
        CheckpointError: For every failure of huggingface_hub or of its HTTP client.
        Exception: ``error`` itself when it is neither (a bug, not a network problem).
    """
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    at = f"'{repo}'" + (f" at revision '{revision}'" if revision else "")
    if isinstance(error, HFValidationError):
        raise CheckpointError(
            f"expected 'hf-hub:<owner>/<name>[@revision]' with a valid repository id, got "
            f"{at}: {error}"
        ) from error
    if isinstance(error, (RepositoryNotFoundError, RevisionNotFoundError)):
        raise CheckpointError(
            f"cannot fetch {at} from the Hugging Face Hub ({constants.ENDPOINT}): {error}. "
            f"Check the name (and revision); a private or gated repository needs a token "
            f"(HF_TOKEN or `hf auth login`)."
        ) from error
    if isinstance(error, HfHubHTTPError):
        reason = f"the Hub answered: {error}"
        fix = (
            "Check the name and revision (a private or gated repository needs a token: HF_TOKEN "
            "or `hf auth login`), or try again later if the Hub is down"
        )
    elif _is_transport_error(error):
        reason = _hf_transport_reason(error)
        fix = (
            "Check the network and HF_ENDPOINT, or raise the limits with HF_HUB_ETAG_TIMEOUT and "
            "HF_HUB_DOWNLOAD_TIMEOUT (seconds, set before starting Python)"
        )
    else:
        raise error
    cached = _hf_cached_snapshot(repo, revision)
    if cached is not None:
        return cached
    raise CheckpointError(
        f"cannot fetch {at} from the Hugging Face Hub at {constants.ENDPOINT} ({reason}), and "
        f"it is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}). {fix}; once a "
        f"copy is cached, HF_HUB_OFFLINE=1 loads it without contacting the Hub."
    ) from error


def _is_transport_error(error: BaseException) -> bool:
    """Whether ``error`` is a timeout or connection failure of huggingface_hub's HTTP client:
    httpx2/httpx (``TransportError``) in recent versions, requests (an ``OSError``) in older
    ones. ``OfflineModeIsEnabled`` and ``LocalEntryNotFoundError`` are ``OSError`` too."""
    if isinstance(error, OSError):
        return True
    for client in ("httpx2", "httpx"):
        module = sys.modules.get(client)
        transport_error = getattr(module, "TransportError", None)
        if isinstance(transport_error, type) and isinstance(error, transport_error):
            return True
    return False


def _hf_transport_reason(error: BaseException) -> str:
    from huggingface_hub import constants

    timed_out = any("Timeout" in type(cause).__name__ for cause in _causes(error))
    if timed_out:
        return (
            f"no answer within the timeout: HF_HUB_ETAG_TIMEOUT={constants.HF_HUB_ETAG_TIMEOUT} s, "
            f"HF_HUB_DOWNLOAD_TIMEOUT={constants.HF_HUB_DOWNLOAD_TIMEOUT} s; "
            f"{type(error).__name__}: {error}"
        )
    return f"{type(error).__name__}: {error}"


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__
