"""Hub names: ``"hf-hub:<repo>[@revision]"`` (huggingface_hub, optional extra ``vitlib[hub]``),
``"torchvision:<name>"`` and ``http(s)`` URLs of weight files.

Every name is cached, so a name that was fetched once loads offline afterwards.

``hf-hub:`` names use Hugging Face's own cache (``HF_HOME``/``HF_HUB_CACHE``; ``HF_HUB_OFFLINE=1``
never contacts the Hub). Only the weights that will be loaded are fetched: ``model.safetensors``
when the repository has one, else ``pytorch_model.bin``, plus ``config.json``. Every request has a
timeout: the file listing and each file's metadata wait at most ``HF_HUB_ETAG_TIMEOUT`` seconds,
each read of a download ``HF_HUB_DOWNLOAD_TIMEOUT`` seconds (huggingface_hub's variables, read
when it is imported; both default to 10). The file listing comes first, so an endpoint that does
not answer fails after one ``HF_HUB_ETAG_TIMEOUT``; a Hub that stops answering later is retried
by huggingface_hub itself a few times (a file's metadata with its own 60 s limit). When the Hub
cannot be reached, a cached copy is used if there is one.

``torchvision:`` names and URLs are downloaded into ``torch.hub``'s checkpoint folder
(``$TORCH_HOME/hub/checkpoints``):

* A URL is cached as ``<first 16 hex digits of sha256(url)>-<file name>``, so two URLs that end in
  the same file name never share a cached file. :func:`cache_path` gives that path, for putting a
  file there by hand.
* A ``torchvision:`` name keeps torchvision's own file name (``vit_b_16-c867db91.pth``), so a file
  that torchvision downloaded is used as it is. The part of that name after the last ``-`` is the
  start of the file's sha256 digest; it is checked after every download and on every load of the
  cached file, and a file that does not match is refused.
* The server must answer within :data:`DOWNLOAD_TIMEOUT` seconds, both to connect and for each
  read; set ``VITLIB_DOWNLOAD_TIMEOUT=<seconds>`` to change it. At most :data:`MAX_REDIRECTS`
  redirects are followed, and only to ``http``/``https`` URLs.
* A download goes to a temporary file in the same folder, which is renamed into place only once it
  is complete (and its hash checked), so an interrupted download never becomes the cached file.
"""

from __future__ import annotations

import hashlib
import http.client
import math
import os
import re
import socket
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Final
from urllib.parse import urlparse

import torch

from .._optional import missing_extra
from .._suggest import did_you_mean
from ..errors import CheckpointError

__all__ = ["DOWNLOAD_TIMEOUT", "MAX_REDIRECTS", "TORCHVISION_WEIGHTS", "cache_path", "resolve"]

#: Seconds a server has to accept the connection, and then to send each part of the file, before
#: a download is abandoned. ``VITLIB_DOWNLOAD_TIMEOUT`` overrides it.
DOWNLOAD_TIMEOUT: Final[float] = 30.0
#: Redirects followed by a download before it is abandoned.
MAX_REDIRECTS: Final[int] = 5
_TIMEOUT_VARIABLE: Final[str] = "VITLIB_DOWNLOAD_TIMEOUT"
_CHUNK_BYTES: Final[int] = 1 << 20

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
    return _download(name, cache_path(name)), {}


def cache_path(url: str) -> Path:
    """Where the weights at ``url`` are cached: ``torch.hub``'s checkpoint folder, under a name
    made of the first 16 hex digits of the URL's sha256 and the URL's file name.

    Args:
        url: An ``http(s)`` URL whose path ends in a file name.

    Returns:
        The cache file's path (which need not exist).

    Raises:
        CheckpointError: ``url`` is not an ``http(s)`` URL or names no file.
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https"):
        raise CheckpointError(
            f"expected an http:// or https:// URL of a weights file, got {url!r}; "
            f"other URL schemes are not supported (give a local path instead)."
        )
    filename = os.path.basename(parsed.path)
    if not filename:
        raise CheckpointError(
            f"expected a URL that ends in a weights file name (e.g. .../model.pth), got {url!r}."
        )
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return _checkpoint_folder() / f"{digest}-{filename}"


def _checkpoint_folder() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


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
    try:
        weights_path = Path(
            hf_hub_download(
                repo,
                weights,
                revision=revision or None,
                endpoint=api.endpoint,
                etag_timeout=timeout,
            )
        )
        if _HF_CONFIG in available:
            # Pin the config to the commit the weights came from: same snapshot folder.
            commit = weights_path.parent.name
            hf_hub_download(
                repo,
                _HF_CONFIG,
                revision=commit if _COMMIT.fullmatch(commit) else revision or None,
                endpoint=api.endpoint,
                etag_timeout=timeout,
            )
    except Exception as error:  # classified below; anything unexpected is re-raised there
        return _hf_unavailable(repo, revision or None, error)
    return weights_path.parent


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


# -- torchvision and URLs ------------------------------------------------------------------------


def _torchvision(name: str) -> tuple[Path, dict[str, Any]]:
    if name not in TORCHVISION_WEIGHTS:
        hint = did_you_mean(name, TORCHVISION_WEIGHTS, n=3)
        raise CheckpointError(
            f"unknown torchvision weights {name!r}{hint}. Known: {', '.join(TORCHVISION_WEIGHTS)}."
        )
    filename, img_size = TORCHVISION_WEIGHTS[name]
    # torchvision's own file name, so that its downloads are reused; the hash in it protects it
    cached = _checkpoint_folder() / filename
    expected = filename.rsplit(".", 1)[0].rpartition("-")[2]
    path = _download(_TORCHVISION_URL + filename, cached, sha256_prefix=expected)
    return path, {"img_size": img_size}


def _download(url: str, cached: Path, *, sha256_prefix: str | None = None) -> Path:
    """``cached``, downloaded from ``url`` first if it is not there yet.

    Args:
        url: An ``http(s)`` URL.
        cached: Where the file is cached.
        sha256_prefix: When given, the file's sha256 hex digest must start with it, both for a
            fresh download (checked before it is renamed into place) and for a cached file.

    Returns:
        ``cached``.

    Raises:
        CheckpointError: The download failed, timed out or was incomplete, or the hash differs.
    """
    cache_path(url)  # validates the URL (scheme, file name)
    if cached.exists() or cached.is_symlink():
        if not cached.is_file():
            raise CheckpointError(
                f"expected the cached weights of {url} at {cached} to be a file, found something "
                f"else there; remove it to download the file again."
            )
        if sha256_prefix is not None:
            _check_sha256(cached, sha256_prefix, fix=f"delete {cached} to download it again")
        return cached
    timeout = _download_timeout()
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        with _temporary_file(cached) as (stream, partial):
            size = _fetch(url, stream, timeout)
            stream.close()
            if sha256_prefix is not None:
                _check_sha256(
                    partial,
                    sha256_prefix,
                    fix=f"the server sent a different file ({size} bytes); check the URL",
                    what=f"the file downloaded from {url}",
                )
            os.replace(partial, cached)
    except CheckpointError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise CheckpointError(
            f"cannot download {url}: {_download_reason(error, timeout)}. Check the URL and the "
            f"network, or put the file at {cached} to load it offline."
        ) from error
    return cached


@contextmanager
def _temporary_file(cached: Path) -> Iterator[tuple[IO[bytes], Path]]:
    """A new file next to ``cached``, removed unless it was renamed away."""
    handle, name = tempfile.mkstemp(dir=cached.parent, prefix=f".{cached.name}.", suffix=".part")
    partial = Path(name)
    try:
        with os.fdopen(handle, "wb") as stream:
            yield stream, partial
    finally:
        partial.unlink(missing_ok=True)


def _fetch(url: str, stream: IO[bytes], timeout: float) -> int:
    """Stream ``url``'s body into ``stream``; the number of bytes written."""
    opener = urllib.request.build_opener(_HttpRedirects())
    request = urllib.request.Request(url, headers={"User-Agent": _user_agent()})
    with opener.open(request, timeout=timeout) as response:
        expected = response.headers.get("Content-Length")
        size = 0
        while chunk := response.read(_CHUNK_BYTES):
            stream.write(chunk)
            size += len(chunk)
    if expected is not None and expected.isdigit() and int(expected) != size:
        raise http.client.IncompleteRead(b"", int(expected) - size)
    return size


class _HttpRedirects(urllib.request.HTTPRedirectHandler):
    """Follows at most :data:`MAX_REDIRECTS` redirects, and only to ``http(s)`` URLs."""

    max_redirections = MAX_REDIRECTS

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urlparse(newurl).scheme not in ("http", "https"):
            fp.close()
            raise CheckpointError(
                f"cannot download {req.full_url}: the server redirects to {newurl!r}, and only "
                f"http:// and https:// redirects are followed; download the file yourself and "
                f"give its local path."
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _download_timeout() -> float:
    value = os.environ.get(_TIMEOUT_VARIABLE)
    if value is None or not value.strip():
        return DOWNLOAD_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise CheckpointError(
            f"expected {_TIMEOUT_VARIABLE} to be a number of seconds > 0, got {value!r}; "
            f"e.g. {_TIMEOUT_VARIABLE}=120, or unset it for the default {DOWNLOAD_TIMEOUT:g} s."
        )
    return seconds


def _download_reason(error: BaseException, timeout: float) -> str:
    """What went wrong, in a few words, from urllib's and http.client's exceptions."""
    if isinstance(error, urllib.error.HTTPError):
        return f"the server answered HTTP {error.code} {error.reason}"
    cause: BaseException = error
    if isinstance(error, urllib.error.URLError) and isinstance(error.reason, BaseException):
        cause = error.reason
    if isinstance(cause, TimeoutError):  # socket.timeout is TimeoutError
        return (
            f"no answer within {timeout:g} s (timed out; set {_TIMEOUT_VARIABLE}=<seconds> to "
            f"wait longer)"
        )
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, socket.gaierror):
        return f"host not found ({cause})"
    if isinstance(cause, http.client.IncompleteRead):
        short = f", {cause.expected} bytes short" if cause.expected is not None else ""
        return f"the connection closed before the whole file arrived{short} (nothing was cached)"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return f"{type(error).__name__}: {error}"


def _user_agent() -> str:
    from .._version import __version__

    return f"vitlib/{__version__} (Python-urllib)"


def _check_sha256(path: Path, prefix: str, *, fix: str, what: str | None = None) -> None:
    """Refuse ``path`` unless its sha256 hex digest starts with ``prefix`` (hashed in chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            digest.update(chunk)
    actual = digest.hexdigest()
    if not actual.startswith(prefix.lower()):
        raise CheckpointError(
            f"{what or path} does not match the hash in its name: expected a sha256 starting "
            f"with {prefix!r}, got {actual[: max(len(prefix), 8)]!r}; {fix}."
        )
