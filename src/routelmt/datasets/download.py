"""Fetch files over HTTP into a cache, so a failed or cut-off download never looks complete.

Only the standard library is used. Each file is streamed into a temporary file beside its
destination and renamed into place only after the whole body (as announced by Content-Length)
has arrived; transient failures (timeouts, resets, 5xx, 429, truncated bodies) are retried with
exponential backoff, permanent ones (404, 403, ...) are reported at once.
"""

from __future__ import annotations

import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from routelmt import __version__
from routelmt.errors import RouteLMTError
from routelmt.storage import atomic_open

log = logging.getLogger(__name__)

USER_AGENT = f"routelmt/{__version__} (+https://github.com/wmt-conference)"
_CHUNK = 1 << 16
_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class DownloadError(RouteLMTError):
    """A download failed; ``url`` and (when the server answered) ``status`` say which and how."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        self.url = url
        self.status = status
        super().__init__(message)


class NotFoundError(DownloadError):
    """The server answered 404/410: the file does not exist there (never retried)."""


class _Transient(Exception):
    def __init__(self, reason: str, status: int | None = None) -> None:
        self.reason = reason
        self.status = status
        super().__init__(reason)


def _fetch_once(url: str, dest: Path, timeout: float, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            announced = response.headers.get("Content-Length")
            total = 0
            with atomic_open(dest, "wb") as out:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    total += len(chunk)
                # urllib does not raise when a body is shorter than announced: check here, inside
                # atomic_open, so the temporary file is discarded.
                if announced is not None and announced.isdigit() and total != int(announced):
                    raise _Transient(f"truncated body: got {total} of {announced} bytes")
            return total
    except urllib.error.HTTPError as exc:
        if exc.code in _TRANSIENT_STATUS:
            raise _Transient(f"HTTP {exc.code} {exc.reason}", exc.code) from None
        if exc.code in (404, 410):
            raise NotFoundError(
                f"not found (HTTP {exc.code}): {url}", url=url, status=exc.code
            ) from None
        hint = ""
        if exc.code == 403 and "api.github.com" in url:
            hint = " (GitHub API rate limit? retry later or use a local clone as root)"
        message = f"download refused (HTTP {exc.code} {exc.reason}){hint}: {url}"
        raise DownloadError(message, url=url, status=exc.code) from None
    except http.client.IncompleteRead as exc:
        raise _Transient(f"truncated body: got {len(exc.partial)} bytes, more expected") from None
    except urllib.error.URLError as exc:
        raise _Transient(f"cannot connect ({exc.reason})") from None
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        kind = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        raise _Transient(f"{kind} after {timeout:g} s" if kind == "timed out" else kind) from None


def fetch_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 0.5,
    headers: dict[str, str] | None = None,
) -> Path:
    """Download ``url`` to ``dest`` atomically; returns ``dest``.

    ``timeout`` bounds each socket operation; ``retries`` is the number of extra attempts after
    the first, spaced ``backoff * 2**k`` seconds apart.
    """
    dest = Path(dest)
    last: _Transient | None = None
    attempts = retries + 1
    for attempt in range(attempts):
        if attempt:
            delay = backoff * 2 ** (attempt - 1)
            log.info("retrying %s in %.2f s (%s)", url, delay, last.reason if last else "")
            time.sleep(delay)
        try:
            size = _fetch_once(url, dest, timeout, headers or {})
        except _Transient as exc:
            last = exc
            continue
        log.debug("downloaded %s (%d bytes) to %s", url, size, dest)
        return dest
    assert last is not None
    raise DownloadError(
        f"download failed after {attempts} attempt{'s' if attempts > 1 else ''} "
        f"({last.reason}): {url}",
        url=url,
        status=last.status,
    )
