"""Repair before escalating: the deterministic failure checks and the one re-decode."""

from __future__ import annotations

import pytest

from routelmt.errors import ConfigError
from routelmt.prompts import get_template
from routelmt.records import Segment
from routelmt.repair import Repairer, check_repair_setting, failure_of, is_copy, is_echo

TEMPLATES = [get_template("fewshot"), get_template("fewshot-alt")]
SRC = "The president said on Tuesday that the economy grew faster than expected this year."
SEG = Segment(id="s1", direction="en-es", source=SRC)
GOOD = "El presidente dijo el martes que la economía creció más de lo esperado este año."


@pytest.mark.parametrize(
    ("text", "failure"),
    [
        ("", "empty"),
        ("  ...  ", "empty"),
        ("¿Dónde está la estación de tren más cercana?", "echo"),
        ("¿Dónde está la estación de tren más cercana? El presidente dijo", "echo"),
        ("Ayer probé la nueva actualización", "echo"),  # the repair prompt's own example
        ("¿Dónde está el tren más cercano?", "echo"),  # a word or two changed
        ("Si te vas, ¿cuándo es la estación de tren más cercana?", "echo"),  # most of one
        ("El alcalde dijo que la estación de tren cerrará.", None),  # a few shared words
        (SRC, "copy"),
        (SRC.upper().replace(",", ""), "copy"),
        (GOOD, None),
    ],
)
def test_failures_are_found_and_good_text_passes(text, failure):
    assert failure_of(SEG, text, TEMPLATES, language_check=False) == failure


def test_a_near_echo_in_german_is_found():
    seg = Segment(id="d", direction="en-de", source=SRC)
    echo = "Der Staatsanwalt hat am Montag den neuen Haushalt verabschiedet."
    assert failure_of(seg, echo, TEMPLATES, language_check=False) == "echo"
    good = "Der Präsident sagte am Dienstag, die Wirtschaft sei schneller gewachsen als erwartet."
    assert failure_of(seg, good, TEMPLATES, language_check=False) is None


def test_echo_needs_an_unrelated_source():
    # the source itself is the example sentence: its translation is right, not an echo
    seg = Segment(id="s2", direction="en-es", source="Where is the nearest train station?")
    assert not is_echo(
        "¿Dónde está la estación de tren más cercana?",
        seg.source,
        [("Where is the nearest train station?", "¿Dónde está la estación de tren más cercana?")],
    )
    assert failure_of(seg, "¿Dónde está la estación de tren más cercana?", TEMPLATES) is None


def test_short_sources_may_be_copied():
    assert not is_copy("Barack Obama", "Barack Obama")
    assert is_copy("barack obama speaks today", "Barack Obama speaks today.")


def test_wrong_language_uses_lingua():
    pytest.importorskip("lingua")
    french = "Le président a déclaré mardi que l'économie avait progressé plus vite que prévu."
    assert failure_of(SEG, french, TEMPLATES) == "wrong_language"
    assert failure_of(SEG, GOOD, TEMPLATES) is None
    zh = Segment(id="z", direction="en-zh", source=SRC)
    assert (
        failure_of(
            zh, "总统周二表示，今年经济增长速度超出预期，令许多观察人士感到意外。", TEMPLATES
        )
        is None
    )


def test_repairer_redecodes_only_flagged_and_keeps_a_failed_repair_out():
    segs = [SEG, Segment(id="s3", direction="en-es", source=SRC + " Really."), SEG]
    first = [GOOD, "¿Dónde está la estación de tren más cercana?", SRC]
    asked: list[list[str]] = []

    def decode(batch):
        asked.append([s.id for s in batch])
        # the second segment's repair works, the copy is copied again
        return ["El presidente habló, de verdad.", SRC], 7

    repairer = Repairer(TEMPLATES, decode, language_check=False)
    out = repairer.repair(segs, first)
    assert asked == [["s3", "s1"]]  # one batch, flagged rows only, in order
    assert out == [GOOD, "El presidente habló, de verdad.", SRC]
    report = repairer.last_report
    assert report.checked == 3 and report.repaired == 1
    assert report.flagged == {"echo": 1, "copy": 1}
    assert report.generated_tokens == 7 and report.seconds >= report.decode_s >= 0


def test_nothing_flagged_means_no_decode():
    def decode(batch):
        raise AssertionError("no decode expected")

    repairer = Repairer(TEMPLATES, decode, language_check=False)
    assert repairer.repair([SEG], [GOOD]) == [GOOD]
    assert repairer.last_report.repaired == 0 and not repairer.last_report.flagged


def test_repair_is_off_by_default():
    from routelmt.backends.resolve import make_translator
    from routelmt.repair import DEFAULT_REPAIR

    assert DEFAULT_REPAIR == "off"
    assert make_translator("llamacpp:gemma3-270m", threads=1).repairer is None


def test_repair_setting_is_checked():
    assert check_repair_setting("zeroshot") == "zeroshot"
    assert check_repair_setting("off") == "off"
    assert check_repair_setting(None) == "off"
    with pytest.raises(ConfigError, match="repair must be"):
        check_repair_setting("sometimes")


def test_backend_rejects_a_bad_repair_option():
    from routelmt.backends.resolve import make_translator

    with pytest.raises(ConfigError, match="repair must be"):
        make_translator("llamacpp:gemma3-270m", repair="bogus", threads=1)
    with pytest.raises(ConfigError, match="repair must be"):
        make_translator("hf:gemma3-270m", repair=3)


def test_hf_backend_repairs_through_a_sibling_on_the_same_weights(monkeypatch):
    """The backend glue on a tiny random model: the first decode is replaced by a copy of the
    source (so it is flagged), the repair decode is the real zero-shot decode of the same
    weights, and its cost lands in ``last_stats`` on both translate paths."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from test_features_tiny import _byte_tokenizer, _tiny_model

    from routelmt.backends.hf import HFTranslator

    model = _tiny_model("llama").to(torch.float64)
    tr = HFTranslator(
        model=model, tokenizer=_byte_tokenizer(), max_new_tokens=6, batch_size=2, name="tiny",
        repair="zeroshot",
    )  # fmt: skip
    repairer = tr.repairer
    repairer.language_check = False  # random bytes have no language
    real_translate = tr.generator.translate
    copies = [Segment(id=f"c{i}", direction="en-es", source=SRC + f" Number {i}.") for i in (1, 2)]
    monkeypatch.setattr(tr.generator, "translate", lambda segs: [s.source for s in segs])
    out = tr.translate(copies)
    stats = tr.last_stats
    assert stats.repair_flagged == 2 and stats.repair_generated_tokens > 0
    assert stats.repair_s > 0 and stats.generated_tokens >= stats.repair_generated_tokens
    fixed = [i for i, (o, s) in enumerate(zip(out, copies, strict=True)) if o != s.source]
    assert stats.repair_fixed == len(fixed)
    # a replaced text is exactly what the zero-shot sibling decodes, and passes the checks
    monkeypatch.setattr(tr.generator, "translate", real_translate)
    sibling = HFTranslator(
        model=model, tokenizer=_byte_tokenizer(), max_new_tokens=6, batch_size=2,
        template="zeroshot", repair="off",
    )  # fmt: skip
    assert [out[i] for i in fixed] == [sibling.translate([copies[i]])[0] for i in fixed]
    # the shared-prefill path is repaired too
    state = tr.prefill(copies)
    from routelmt.generation import GenerationStats

    def copied(state, indices):
        tr.generator.last_stats = GenerationStats(segments=len(indices))  # as a real call does
        return [copies[i].source for i in indices]

    monkeypatch.setattr(tr.generator, "generate_from", copied)
    assert tr.generate_from(state, [1, 0]) == [out[1], out[0]]
    assert tr.last_stats.repair_flagged == 2
