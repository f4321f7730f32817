"""Headless Chromium for the tests that look at a page as a person would: the DOM after the
page's scripts ran, and a screenshot. Tests skip, saying why, where Chromium is not installed
(CI installs Debian's ``chromium`` package in .ci/run)."""

from __future__ import annotations

import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


def chromium() -> str:
    """The browser's path, or skip the test."""
    for name in _NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not installed (apt-get install chromium; CI installs it)")


def _run(url: str, profile: Path, *flags: str, budget_ms: int) -> str:
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",  # tests may run as root in a container
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={budget_ms}",
        *flags,
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def dump_dom(url: str, profile: Path, *, budget_ms: int = 4000) -> str:
    """The page's DOM once its scripts ran (``budget_ms`` of virtual time)."""
    return _run(url, profile, "--dump-dom", budget_ms=budget_ms)


def screenshot(url: str, path: Path, profile: Path, *, size: str = "1400,1900") -> Path:
    """A PNG of the page; copied to $ROUTELMT_SCREENSHOTS too when set (to look at it)."""
    _run(url, profile, f"--screenshot={path}", f"--window-size={size}", budget_ms=4000)
    assert path.stat().st_size > 10_000, "the screenshot is (nearly) empty"
    where = os.environ.get("ROUTELMT_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(where) / path.name)
    return path


class Page(HTMLParser):
    """Every element with an id: its text and attributes; every table with an id: its body
    rows as lists of cell texts (and each row's attributes)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text: dict[str, str] = {}
        self.attrs: dict[str, dict[str, str]] = {}
        self.rows: dict[str, list[list[str]]] = {}
        self.row_attrs: dict[str, list[dict[str, str]]] = {}
        self._open: list[tuple[str, str | None]] = []
        self._table: list[str | None] = []
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "table":
            self._table.append(a.get("id"))
        table = self._table[-1] if self._table else None
        if tag == "tr" and table and self._inside("tbody"):
            self.rows.setdefault(table, []).append([])
            self.row_attrs.setdefault(table, []).append(a)
        if tag in ("td", "th") and table and self._inside("tbody"):
            self._cell = []
        if "id" in a:
            self.text[a["id"]] = ""
            self.attrs[a["id"]] = a
        if tag not in _VOID:
            self._open.append((tag, a.get("id")))

    def _inside(self, tag: str) -> bool:
        return any(t == tag for t, _ in self._open)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.rows[self._table[-1]][-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "table" and self._table:
            self._table.pop()
        while self._open:
            t, _ = self._open.pop()
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, element_id in self._open:
            if element_id:
                self.text[element_id] += data
        if self._cell is not None:
            self._cell.append(data)

    def value(self, element_id: str) -> float:
        """The raw number the page's script stored beside the text (``data-value``)."""
        return float(self.attrs[element_id]["data-value"])
