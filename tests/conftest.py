"""Shared test setup: an isolated cache per test session, and the real WMT24 folder when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

WMT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wmt24"


@pytest.fixture(scope="session")
def wmt_root() -> Path:
    if not (WMT_ROOT / "txt" / "sources").is_dir():
        pytest.skip("real WMT24 data not found at ../shared/data/wmt24")
    return WMT_ROOT


@pytest.fixture(scope="session")
def short_en_es(wmt_root: Path) -> list:
    """Real en-es sentences of 8-14 words, in file order: short enough to keep a live-model test
    quick, and not headlines (which a 270M model tends to copy through untranslated)."""
    from routelmt.datasets.wmt import WMTDataset

    pool = WMTDataset(wmt_root).segments("en-es", reference=None)
    return [
        s
        for s in pool
        if 8 <= len(s.source.split()) <= 14 and s.source.rstrip().endswith(".")
        and "\n" not in s.source
    ]  # fmt: skip


@pytest.fixture(autouse=True)
def _no_wmt24_download_in_tests(monkeypatch: pytest.MonkeyPatch):
    """Without the local WMT24 copy, a test that would download the official WMT24 files (no
    network in CI; minutes with one) is skipped, saying why, instead of failing; downloads from
    other URLs (the download tests' loopback server) go through."""
    if (WMT_ROOT / "txt" / "sources").is_dir() or os.environ.get("ROUTELMT_DATA"):
        yield
        return
    from routelmt.datasets import wmt

    real = wmt.fetch_file

    def fetch(url: str, *args, **kwargs):
        official = (wmt.DEFAULT_BASE_URL, "https://api.github.com/repos/wmt-conference/")
        if url.startswith(official):
            pytest.skip(f"real WMT24 data not found at {WMT_ROOT} (tests do not download it)")
        return real(url, *args, **kwargs)

    monkeypatch.setattr(wmt, "fetch_file", fetch)
    yield


# Converted models are slow to make (about a minute each): every test reuses the user's.
_USER_MODELS = os.environ.get("ROUTELMT_MODELS") or str(
    Path(os.environ.get("ROUTELMT_CACHE") or Path.home() / ".cache" / "routelmt") / "models"
)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Tests never touch the user's caches (labels, features, downloads), only its models."""
    monkeypatch.setenv("ROUTELMT_MODELS", _USER_MODELS)
    if "ROUTELMT_TEST_REAL_CACHE" not in os.environ:
        monkeypatch.setenv("ROUTELMT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("ROUTELMT_STATE", str(tmp_path_factory.getbasetemp() / "state"))
    monkeypatch.delenv("ROUTELMT_API_KEY", raising=False)
    yield
