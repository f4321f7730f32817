"""WMT official-layout loader on a tiny layout made here (canary + 3 segments per pair)."""

from __future__ import annotations

import hashlib
import json

import pytest
from wmt_layout import CANARY, SOURCES, make_layout, write

from routelmt.datasets.wmt import WMTDataset
from routelmt.errors import ConfigError, InputError


@pytest.fixture
def root(tmp_path):
    return make_layout(tmp_path / "wmt")


def test_listing_and_segments(root):
    data = WMTDataset(root, name="t")
    assert data.pairs() == ["en-de", "en-es"]
    assert data.systems("en-es") == ["Big", "Small"]
    assert data.references("en-es") == ["refA"]
    segs = data.segments("en-es")
    assert [s.id for s in segs] == ["t/en-es/0", "t/en-es/1", "t/en-es/2"]
    assert [s.source for s in segs] == SOURCES  # the canary is skipped
    assert all(CANARY not in s.source for s in segs)
    assert [s.reference for s in segs] == ["en-es ref 0", "en-es ref 1", "en-es ref 2"]
    assert [(s.domain, s.doc_id) for s in segs] == [
        ("news", "doc-a"),
        ("news", "doc-a"),
        ("social", "doc-b"),
    ]
    assert {s.direction for s in segs} == {"en-es"}
    expected = "t/src/" + hashlib.sha1(SOURCES[1].encode()).hexdigest()[:12]
    assert segs[1].source_id == expected


def test_source_id_shared_across_pairs(root):
    data = WMTDataset(root, name="t")
    es, de = data.segments("en-es"), data.segments("en-de")
    assert [s.group for s in es] == [s.group for s in de]
    assert len({s.group for s in es}) == 3
    assert es[0].id != de[0].id


def test_system_outputs_and_translations(root):
    data = WMTDataset(root, name="t")
    out = data.system_outputs("en-es", "Small")
    assert out == {"t/en-es/0": "Hola.", "t/en-es/1": "", "t/en-es/2": "Noches."}
    trans = data.translations("en-es", "Big")
    assert [(t.segment_id, t.system, t.text) for t in trans][2] == (
        "t/en-es/2",
        "Big",
        "Buenas noches.",
    )
    assert data.valid_systems("en-es") == ["Big", "Small"]


def test_root_may_be_the_txt_folder(root):
    assert WMTDataset(root / "txt", name="t").pairs() == ["en-de", "en-es"]


def test_not_a_wmt_folder(tmp_path):
    with pytest.raises(ConfigError, match="is not a WMT system-outputs folder"):
        WMTDataset(tmp_path)


def test_no_canary_keeps_first_line(tmp_path):
    data = WMTDataset(make_layout(tmp_path, canary=False), name="t")
    segs = data.segments("en-es")
    assert [s.source for s in segs] == SOURCES
    assert data.system_outputs("en-es", "Big")["t/en-es/0"] == "Hola mundo."


def test_canary_disagreeing_with_documents(root):
    write(root / "txt/documents/en-es.docs", ["news\tx"] * 4)
    with pytest.raises(InputError, match=r"en-es\.docs:1: line 1 of the source is a canary"):
        WMTDataset(root).segments("en-es")


def test_unknown_pair_lists_known(root):
    with pytest.raises(ConfigError, match=r"unknown t pair 'en-fr'; known: en-de, en-es"):
        WMTDataset(root, name="t").segments("en-fr")


def test_unknown_system_lists_known(root):
    with pytest.raises(ConfigError, match=r"unknown system 'GPT-9' for t en-es; known: Big, Small"):
        WMTDataset(root, name="t").system_outputs("en-es", "GPT-9")


def test_empty_system_file(root):
    path = root / "txt/system-outputs/en-es/Empty.txt"
    path.write_text("")
    data = WMTDataset(root)
    assert "Empty" in data.systems("en-es")
    with pytest.raises(InputError, match=r"Empty\.txt: system output file is empty; expected 4"):
        data.system_outputs("en-es", "Empty")
    assert data.valid_systems("en-es") == ["Big", "Small"]


def test_misaligned_system_file(root):
    write(root / "txt/system-outputs/en-es/Short.txt", [CANARY, "a", "b"])
    data = WMTDataset(root)
    with pytest.raises(InputError) as info:
        data.translations("en-es", "Short")
    message = str(info.value)
    assert "system-outputs/en-es/Short.txt" in message
    assert "has 3 lines but the source has 4" in message
    assert "Short" in data.problems("en-es")


def test_all_blank_system_file(root):
    write(root / "txt/system-outputs/en-es/ONLINE-empty.txt", [CANARY, "", "", ""])
    data = WMTDataset(root)
    assert data.systems("en-es") == ["Big", "ONLINE-empty", "Small"]
    with pytest.raises(InputError, match="all 3 segments are empty"):
        data.system_outputs("en-es", "ONLINE-empty")
    assert data.valid_systems("en-es") == ["Big", "Small"]


def test_lines_split_on_newline_only(root):
    # U+2028 inside a segment must not split it (str.splitlines would, and misalign the file).
    write(root / "txt/system-outputs/en-es/Odd.txt", [CANARY, "a\u2028b", "c\x0cd", "e\r"])
    out = WMTDataset(root, name="t").system_outputs("en-es", "Odd")
    assert out == {"t/en-es/0": "a\u2028b", "t/en-es/1": "c\x0cd", "t/en-es/2": "e"}


def test_missing_reference(root):
    data = WMTDataset(root)
    with pytest.raises(InputError, match=r"en-es\.refB\.txt: reference 'refB' not found .*refA"):
        data.segments("en-es", reference="refB")
    assert all(s.reference is None for s in data.segments("en-es", reference=None))


def test_metadata_jsonl_fallback(root):
    (root / "txt/documents/en-es.docs").unlink()
    rows = [{"domain": "canary", "docid": "canary"}] + [
        {"domain": "speech", "docid": f"d{i}"} for i in range(3)
    ]
    write(root / "txt/metadata/en-es.jsonl", [json.dumps(r) for r in rows])
    segs = WMTDataset(root).segments("en-es")
    assert [(s.domain, s.doc_id) for s in segs] == [
        ("speech", "d0"),
        ("speech", "d1"),
        ("speech", "d2"),
    ]


def test_bad_docs_line(root):
    write(root / "txt/documents/en-es.docs", ["canary\tcanary", "news\ta", "no-tab", "news\tb"])
    with pytest.raises(InputError, match=r"en-es\.docs:3: expected '<domain>\\t<doc_id>'"):
        WMTDataset(root).segments("en-es")


def test_docs_line_count(root):
    write(root / "txt/documents/en-es.docs", ["canary\tcanary", "news\ta"])
    with pytest.raises(InputError, match=r"en-es\.docs: has 2 lines but the source has 4"):
        WMTDataset(root).segments("en-es")


def test_invalid_utf8(root):
    (root / "txt/sources/en-es.txt").write_bytes(b"CANARY x\nok\n\xff bad\nok\n")
    with pytest.raises(InputError, match=r"en-es\.txt:3: not valid UTF-8"):
        WMTDataset(root).segments("en-es")


def test_no_data_and_no_download(tmp_path):
    with pytest.raises(ConfigError, match="downloading is off"):
        WMTDataset(name="other", base_url=None)
