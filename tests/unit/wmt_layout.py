"""A tiny WMT system-outputs layout (canary + 3 segments per pair), written by the tests."""

from __future__ import annotations

from pathlib import Path

CANARY = "CANARY GUID 00000000-test-canary"
SOURCES = ["Hello world.", "The cat sleeps.", "Good night."]
DOMAINS = [("news", "doc-a"), ("news", "doc-a"), ("social", "doc-b")]
OUTPUTS = {
    "en-es": {
        "Big": ["Hola mundo.", "El gato duerme.", "Buenas noches."],
        "Small": ["Hola.", "", "Noches."],
    },
    "en-de": {"Big": ["Hallo Welt.", "Die Katze schläft.", "Gute Nacht."]},
}


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def make_layout(root: Path, *, canary: bool = True) -> Path:
    """Write ``root/txt/...``; returns root."""
    head = [CANARY] if canary else []
    for pair, systems in OUTPUTS.items():
        txt = root / "txt"
        write(txt / "sources" / f"{pair}.txt", head + SOURCES)
        write(txt / "references" / f"{pair}.refA.txt", head + [f"{pair} ref {i}" for i in range(3)])
        docs = (["canary\tcanary"] if canary else []) + [f"{d}\t{i}" for d, i in DOMAINS]
        write(txt / "documents" / f"{pair}.docs", docs)
        for system, lines in systems.items():
            write(txt / "system-outputs" / pair / f"{system}.txt", head + lines)
    return root
