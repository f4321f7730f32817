"""Download on demand against a real HTTP server on 127.0.0.1 serving a tiny WMT layout."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from wmt_layout import SOURCES, make_layout

from routelmt.datasets.download import DownloadError, fetch_file
from routelmt.datasets.wmt import WMTDataset, github_listing_url
from routelmt.errors import ConfigError, RouteLMTError

FAST = {"timeout": 0.3, "retries": 1, "backoff": 0.01}


class _QuietServer(ThreadingHTTPServer):
    """Clients that time out on purpose leave broken pipes behind; expected, so not printed."""

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class Server:
    """Serves ``/raw/<path>`` from a folder and ``/api/<folder>`` as a contents-API listing;
    ``faults[path] = "500" | "flaky" | "truncate" | "slow" | "stall"`` breaks one path."""

    def __init__(self, docroot: Path) -> None:
        self.docroot = docroot
        self.faults: dict[str, str] = {}
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                server.hits[self.path] += 1
                fault = server.faults.get(self.path)
                if fault == "500" or (fault == "flaky" and server.hits[self.path] == 1):
                    self.send_error(500, "boom")
                    return
                if fault == "slow":
                    time.sleep(1.5)
                body = server.body(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if fault in ("truncate", "stall"):
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    if fault == "stall":
                        time.sleep(1.5)
                    return  # HTTP/1.0: the connection closes with the body cut short
                self.wfile.write(body)

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def body(self, path: str) -> bytes | None:
        if path.startswith("/raw/"):
            file = self.docroot / path.removeprefix("/raw/")
            return file.read_bytes() if file.is_file() else None
        if path.startswith("/api/"):
            folder = self.docroot / path.removeprefix("/api/")
            if not folder.is_dir():
                return None
            entries = [
                {"name": p.name, "type": "dir" if p.is_dir() else "file"} for p in folder.iterdir()
            ]
            return json.dumps(entries).encode()
        return None

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    srv = Server(make_layout(tmp_path / "upstream"))
    yield srv
    srv.close()


def remote(server: Server, cache: Path, **kwargs) -> WMTDataset:
    return WMTDataset(
        name="t",
        base_url=server.url + "/raw",
        list_url=server.url + "/api/{path}",
        cache=cache,
        **{**FAST, **kwargs},
    )


def files_under(path: Path) -> set[str]:
    return (
        {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}
        if path.exists()
        else set()
    )


def test_download_only_what_is_needed(server, tmp_path):
    cache = tmp_path / "cache"
    data = remote(server, cache)
    assert data.pairs() == ["en-de", "en-es"]
    assert data.systems("en-es") == ["Big", "Small"]
    segs = data.segments("en-es")
    assert [s.source for s in segs] == SOURCES
    assert data.system_outputs("en-es", "Big")["t/en-es/2"] == "Buenas noches."
    got = {f for f in files_under(cache) if not f.startswith(".listing")}
    assert got == {
        "txt/sources/en-es.txt",
        "txt/references/en-es.refA.txt",
        "txt/documents/en-es.docs",
        "txt/system-outputs/en-es/Big.txt",
    }
    # A second instance reads the cache: no new request for the same files.
    before = sum(server.hits.values())
    again = remote(server, cache)
    assert again.segments("en-es") == segs
    assert again.systems("en-es") == ["Big", "Small"]
    assert sum(server.hits.values()) == before
    # The cache mirrors the layout, so it is itself a local root.
    assert WMTDataset(cache, name="t").segments("en-es") == segs


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("500", "HTTP 500"),
        ("truncate", "truncated body"),
        ("slow", "timed out"),
        ("stall", "timed out"),
    ],
)
def test_failures_leave_nothing_in_cache(server, tmp_path, fault, reason):
    path = "/raw/txt/sources/en-es.txt"
    server.faults[path] = fault
    cache = tmp_path / "cache"
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        remote(server, cache).segments("en-es")
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert server.url + path in message
    assert reason in message
    assert "after 2 attempts" in message
    assert info.value.url == server.url + path
    assert server.hits[path] == 2  # retried once
    assert (
        not (cache / "txt" / "sources").exists() or files_under(cache / "txt" / "sources") == set()
    )
    assert not [f for f in files_under(cache) if f.endswith(".tmp")]


def test_transient_error_is_retried(server, tmp_path):
    path = "/raw/txt/sources/en-es.txt"
    server.faults[path] = "flaky"
    dest = fetch_file(server.url + path, tmp_path / "x" / "en-es.txt", **FAST)
    assert dest.read_text().splitlines()[1:] == SOURCES
    assert server.hits[path] == 2


def test_not_found_is_not_retried(server, tmp_path):
    data = remote(server, tmp_path / "cache")
    with pytest.raises(ConfigError, match=r"unknown t pair 'en-fr'; known: en-de, en-es"):
        data.segments("en-fr")
    with pytest.raises(ConfigError, match=r"unknown system 'Nope' for t en-es; known: Big, Small"):
        data.system_outputs("en-es", "Nope")
    missing = server.url + "/raw/txt/nothing.txt"
    with pytest.raises(DownloadError, match=f"not found \\(HTTP 404\\): {missing}"):
        fetch_file(missing, tmp_path / "n.txt", **FAST)
    assert server.hits["/raw/txt/nothing.txt"] == 1
    assert not (tmp_path / "n.txt").exists()


def test_failed_listing_names_url(server, tmp_path):
    server.faults["/api/txt/sources"] = "500"
    with pytest.raises(RouteLMTError, match=f"{server.url}/api/txt/sources"):
        remote(server, tmp_path / "cache").pairs()
    assert not files_under(tmp_path / "cache")


def test_without_listing_url(server, tmp_path):
    data = WMTDataset(name="t", base_url=server.url + "/raw", cache=tmp_path / "c", **FAST)
    assert len(data.segments("en-es")) == 3  # files by name still work
    assert len(data.system_outputs("en-es", "Small")) == 3
    with pytest.raises(ConfigError, match="plain HTTP has no folder listing"):
        data.pairs()
    with pytest.raises(ConfigError, match=r"unknown t pair 'en-fr': no file at http"):
        data.segments("en-fr")


def test_github_listing_url():
    raw = "https://raw.githubusercontent.com/wmt-conference/wmt24-news-systems/main"
    assert github_listing_url(raw) == (
        "https://api.github.com/repos/wmt-conference/wmt24-news-systems/contents/{path}?ref=main"
    )
    assert github_listing_url("http://127.0.0.1:8000/raw") is None
