"""Replay backend: recorded outputs looked up by segment id."""

from __future__ import annotations

import pytest
from wmt_layout import make_layout

from routelmt.backends.base import BACKENDS
from routelmt.backends.replay import ReplayTranslator
from routelmt.datasets.wmt import WMTDataset
from routelmt.errors import BackendError, ConfigError
from routelmt.records import Segment, Translation, write_records


def seg(i: str) -> Segment:
    return Segment(id=i, direction="en-es", source="x")


def test_from_mapping_in_order():
    replay = ReplayTranslator("Big", {"a": "uno", "b": "dos"})
    assert replay.name == "Big"
    assert replay.translate([seg("b"), seg("a"), seg("b")]) == ["dos", "uno", "dos"]
    assert "a" in replay and len(replay) == 2


def test_missing_segment_names_id_and_system():
    replay = ReplayTranslator("GPT-4", {"a": "uno"})
    with pytest.raises(
        BackendError,
        match=r"replay system 'GPT-4' has no recorded output for "
        r"segment 'zz'",
    ):
        replay.translate([seg("a"), seg("zz")])


def test_registered():
    assert "replay" in BACKENDS
    replay = BACKENDS.create("replay", system="S", outputs={"a": "b"})
    assert isinstance(replay, ReplayTranslator)


def test_from_wmt_dataset(tmp_path):
    data = WMTDataset(make_layout(tmp_path), name="t")
    both = ReplayTranslator.from_wmt(data, "Big")  # every pair that has the system
    segs = data.segments("en-es") + data.segments("en-de")
    assert both.translate(segs)[2:4] == ["Buenas noches.", "Hallo Welt."]
    only_es = BACKENDS.create("replay", system="Big", dataset=tmp_path, pairs="en-es")
    with pytest.raises(BackendError, match="t/en-de/0|wmt24/en-de/0"):
        only_es.translate(WMTDataset(tmp_path).segments("en-de"))
    small = ReplayTranslator("Small", dataset=data)
    assert small.translate(data.segments("en-es")) == ["Hola.", "", "Noches."]
    with pytest.raises(ConfigError, match="no t pair has a system named 'Nope'"):
        ReplayTranslator("Nope", dataset=data)


def test_from_translations_file(tmp_path):
    path = tmp_path / "t.jsonl"
    write_records(path, [Translation("a", "S", "x"), Translation("a", "L", "y")])
    assert ReplayTranslator.from_translations(path, "L").translate([seg("a")]) == ["y"]
    with pytest.raises(ConfigError, match=r"2 systems \(L, S\)"):
        ReplayTranslator.from_translations(path)
