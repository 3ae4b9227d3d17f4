"""Downloads of weight files (URLs, ``torchvision:`` names) into ``torch.hub``'s checkpoint
folder, with timeouts, bounded redirects and hash checks, put in place by the one atomic writer
(`vitlib.files`) only once complete; "Downloads" in docs/pretrained.md tells the rules.
"""

from __future__ import annotations

import hashlib
import http.client
import math
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Final
from urllib.parse import urlparse

import torch

from vitlib._version import __version__
from vitlib.errors import CheckpointError
from vitlib.files import write_files

__all__ = ["DOWNLOAD_TIMEOUT", "MAX_REDIRECTS", "cache_path", "checkpoint_folder", "download"]

#: Seconds a server has to accept the connection, and then to send each part of the file, before
#: a download is abandoned. ``VITLIB_DOWNLOAD_TIMEOUT`` overrides it.
DOWNLOAD_TIMEOUT: Final[float] = 30.0
#: Redirects followed by a download before it is abandoned.
MAX_REDIRECTS: Final[int] = 5
_TIMEOUT_VARIABLE: Final[str] = "VITLIB_DOWNLOAD_TIMEOUT"
_CHUNK_BYTES: Final[int] = 1 << 20


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
    return checkpoint_folder() / f"{digest}-{filename}"


def checkpoint_folder() -> Path:
    """``torch.hub``'s checkpoint folder (``$TORCH_HOME/hub/checkpoints``), where downloads go."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def download(url: str, cached: Path, *, sha256_prefix: str | None = None) -> Path:
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

    def fetch_into(staging: Path) -> None:
        if cached.is_file():  # another process fetched it while this one waited
            return
        partial = staging / cached.name
        with open(partial, "wb") as stream:
            size = _fetch(url, stream, timeout)
        if sha256_prefix is not None:
            _check_sha256(
                partial,
                sha256_prefix,
                fix=f"the server sent a different file ({size} bytes); check the URL",
                what=f"the file downloaded from {url}",
            )

    try:
        write_files(
            cached.parent, fetch_into, overwrite=True, what="download", exclusive=False, wait=True
        )
    except CheckpointError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise CheckpointError(
            f"cannot download {url}: {_download_reason(error, timeout)}. Check the URL and the "
            f"network, or put the file at {cached} to load it offline."
        ) from error
    return cached


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
    """Follows at most ``MAX_REDIRECTS`` redirects, and only to ``http(s)`` URLs."""

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
