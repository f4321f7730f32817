"""Plain corpora: JSONL records, TSV with or without header, one-source-per-line text."""

from __future__ import annotations

import json

import pytest

from routelmt.datasets.plain import load_segments
from routelmt.errors import ConfigError, InputError


def test_txt_with_default_direction(tmp_path):
    path = tmp_path / "news.txt"
    path.write_text("Hello.\nBye.\nHello.\n", encoding="utf-8")
    segs = load_segments(path, direction="en-es")
    assert [s.id for s in segs] == ["news/0", "news/1", "news/2"]
    assert [s.direction for s in segs] == ["en-es"] * 3
    assert segs[0].group == segs[2].group != segs[1].group


def test_tsv_without_and_with_header(tmp_path):
    plain = tmp_path / "a.tsv"
    plain.write_text("Hello.\tHola.\nBye.\n", encoding="utf-8")
    segs = load_segments(plain, direction="en-es", name="c")
    assert [(s.id, s.source, s.reference) for s in segs] == [
        ("c/0", "Hello.", "Hola."),
        ("c/1", "Bye.", None),
    ]
    headed = tmp_path / "b.tsv"
    headed.write_text("id\tdirection\tsource\nx1\ten-de\tHi.\nx2\ten-zh\tYo.\n", encoding="utf-8")
    segs = load_segments(headed)
    assert [(s.id, s.direction) for s in segs] == [("x1", "en-de"), ("x2", "en-zh")]


def test_jsonl_fills_missing_fields(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [{"source": "Hi.", "id": "k"}, {"source": "Yo.", "direction": "en-uk"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    segs = load_segments(path, direction="en-es")
    assert [(s.id, s.direction) for s in segs] == [("k", "en-es"), ("c/1", "en-uk")]


def test_errors_name_file_line_field(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("Hello.\n\nBye.\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"d\.txt:2: field 'source': empty source text"):
        load_segments(path, direction="en-es")
    with pytest.raises(InputError, match=r"d\.txt:1: field 'direction': missing required field"):
        load_segments(path)
    with pytest.raises(ConfigError, match="invalid direction 'english'"):
        load_segments(path, direction="english")
    bad = tmp_path / "e.tsv"
    bad.write_text("a\tb\tc\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"e\.tsv:1: expected 2 tab-separated columns"):
        load_segments(bad, direction="en-es")
    dup = tmp_path / "f.jsonl"
    dup.write_text('{"id": "a", "source": "x"}\n{"id": "a", "source": "y"}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"f\.jsonl:2: field 'id': duplicate id 'a'"):
        load_segments(dup, direction="en-es")
    with pytest.raises(ConfigError, match="unsupported corpus format '.csv'"):
        (tmp_path / "g.csv").write_text("x\n")
        load_segments(tmp_path / "g.csv", direction="en-es")
    (tmp_path / "h.txt").write_text("")
    with pytest.raises(InputError, match="no segments"):
        load_segments(tmp_path / "h.txt", direction="en-es")
