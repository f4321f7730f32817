from __future__ import annotations

import json

import pytest

from routelmt.errors import ConfigError, InputError
from routelmt.languages import language_name, parse_direction
from routelmt.records import ScoredExample, Segment, read_records, to_dict, write_records
from routelmt.registry import Registry
from routelmt.storage import atomic_open, stable_hash


def _example(i: int, qs: float = 50.0, ql: float = 60.0) -> ScoredExample:
    seg = Segment(id=f"s{i}", direction="en-es", source="Hello", reference="Hola", domain="news")
    return ScoredExample(seg, "S", "L", "Hola", "Hola", "chrF2", qs, ql)


def test_scored_round_trip(tmp_path):
    path = tmp_path / "x.jsonl"
    written = [_example(1), _example(2, 70.0, 40.0)]
    assert write_records(path, written) == 2
    loaded = read_records(path, ScoredExample)
    assert loaded == written
    assert loaded[1].gain == pytest.approx(-30.0)
    assert to_dict(loaded[0])["gain"] == pytest.approx(10.0)


def test_malformed_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(to_dict(_example(1))) + "\n{not json\n")
    with pytest.raises(InputError, match=r"bad.jsonl:2: malformed JSON"):
        read_records(path, ScoredExample)


def test_wrong_type_names_field(tmp_path):
    row = to_dict(_example(1))
    row["q_small"] = "high"
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(InputError, match=r"t.jsonl:1: field 'q_small': expected float"):
        read_records(path, ScoredExample)


def test_missing_field_and_bad_direction(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"id": "a", "direction": "en-es"}) + "\n")
    with pytest.raises(InputError, match="field 'source': missing"):
        read_records(path, Segment)
    path.write_text(json.dumps({"id": "a", "direction": "en-xx", "source": "hi"}) + "\n")
    with pytest.raises(InputError, match="field 'direction': unknown language code 'xx'"):
        read_records(path, Segment)


def test_inconsistent_gain_and_duplicates(tmp_path):
    row = to_dict(_example(1))
    row["gain"] = 99.0
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(InputError, match="field 'gain'"):
        read_records(path, ScoredExample)
    good = json.dumps(to_dict(_example(1)))
    path.write_text(good + "\n" + good + "\n")
    with pytest.raises(InputError, match="duplicate id 's1'"):
        read_records(path, ScoredExample)


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(InputError, match="empty"):
        read_records(path, Segment)
    assert read_records(path, Segment, allow_empty=True) == []


def test_atomic_open_keeps_old_file_on_crash(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(path) as handle:
        handle.write("partial")
        raise RuntimeError("crash")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_languages_and_registry():
    assert parse_direction("en-ZH") == ("en", "zh")
    assert language_name("pt_BR") == "Portuguese"
    with pytest.raises(ConfigError, match="invalid direction"):
        parse_direction("english")
    registry: Registry[int] = Registry("thing")
    registry.register("one")(lambda: 1)
    assert registry.create("one") == 1
    with pytest.raises(ConfigError, match="unknown thing 'two'; known: one"):
        registry.get("two")
    assert stable_hash({"a": 1, "b": 2}) == stable_hash({"b": 2, "a": 1})
