"""chrF / chrF++ / BLEU agree with the sacrebleu command line, sentence by sentence."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from routelmt.errors import ConfigError, InputError, MissingDependencyError
from routelmt.metrics import METRICS, get_metric

ES_REFS = [
    "El gato se sentó en la alfombra.",
    "¿Dónde está la estación de tren más cercana?",
    "Mañana lloverá en el norte, según el pronóstico.",
    "Hola.",
    "La reunión fue aplazada hasta el jueves por la tarde.",
]
ES_HYPS = [
    "El gato está sentado en la alfombra.",
    "¿Dónde queda la estación de trenes más cercana?",
    "Según el pronóstico, mañana lloverá en el norte.",
    "Adiós, amigo mío.",
    "",
]
ZH_REFS = [
    "猫坐在垫子上。",
    "最近的火车站在哪里？",
    "根据天气预报，明天北方会下雨。",
    "会议推迟到星期四下午。",
]
ZH_HYPS = [
    "猫在垫子上坐着。",
    "离这里最近的火车站在哪儿？",
    "明天北方将会下雨，根据预报。",
    "会议被推迟到了周四下午。",
]


def run_cli(
    tmp_path: Path, hyps: list[str], refs: list[str], *args: str
) -> list[tuple[str, float]]:
    """Run ``python -m sacrebleu -sl`` on files; return (signature, score) per sentence."""
    hyp_file, ref_file = tmp_path / "hyp.txt", tmp_path / "ref.txt"
    hyp_file.write_text("\n".join(hyps) + "\n", encoding="utf-8")
    ref_file.write_text("\n".join(refs) + "\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "sacrebleu", str(ref_file), "-i", str(hyp_file), "-sl", "-w", "8"]
        + list(args),
        capture_output=True,
        text=True,
        check=True,
    )
    rows = []
    for line in proc.stdout.strip().splitlines():
        signature, rest = line.split(" = ", 1)
        rows.append((signature, float(rest.split()[0])))
    assert len(rows) == len(hyps)
    return rows


@pytest.mark.parametrize(
    ("name", "cli_args"),
    [("chrf", ["-m", "chrf"]), ("chrf++", ["-m", "chrf", "--chrf-word-order", "2"])],
)
def test_chrf_matches_cli_on_spanish_and_chinese(
    tmp_path: Path, name: str, cli_args: list[str]
) -> None:
    metric = get_metric(name)
    for hyps, refs, lang in [(ES_HYPS, ES_REFS, "es"), (ZH_HYPS, ZH_REFS, "zh")]:
        cli = run_cli(tmp_path, hyps, refs, *cli_args)
        ours = metric.sentence_scores(hyps, refs, [lang] * len(hyps))
        np.testing.assert_allclose(ours, [score for _, score in cli], atol=1e-6)
        assert {sig for sig, _ in cli} == {metric.signature()}
    assert ours.dtype == np.float64


def test_chrf_signature_is_sacrebleus_default() -> None:
    assert get_metric("chrf").signature() == (
        "chrF2|nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"
    )
    assert "nw:2" in get_metric("chrf++").signature()


def test_bleu_matches_cli_with_13a_for_spanish(tmp_path: Path) -> None:
    metric = get_metric("bleu")
    cli = run_cli(tmp_path, ES_HYPS, ES_REFS, "-m", "bleu", "-l", "en-es")
    ours = metric.sentence_scores(ES_HYPS, ES_REFS, ["es"] * len(ES_HYPS))
    np.testing.assert_allclose(ours, [score for _, score in cli], atol=1e-6)
    assert metric.signature() == cli[0][0]
    assert "tok:13a" in metric.signature()
    assert ours[-1] == 0.0 and 0.0 < ours[0] < 100.0


def test_bleu_matches_cli_with_zh_tokenizer_for_chinese(tmp_path: Path) -> None:
    metric = get_metric("bleu")
    cli = run_cli(tmp_path, ZH_HYPS, ZH_REFS, "-m", "bleu", "-l", "en-zh")
    ours = metric.sentence_scores(ZH_HYPS, ZH_REFS, "zh")
    np.testing.assert_allclose(ours, [score for _, score in cli], atol=1e-6)
    assert metric.signature() == cli[0][0]
    assert "tok:zh" in metric.signature()
    # The tokeniser matters here: 13a sees each Chinese sentence as about one word.
    with_13a = run_cli(tmp_path, ZH_HYPS, ZH_REFS, "-m", "bleu", "-tok", "13a")
    assert not np.allclose(ours, [score for _, score in with_13a])


def test_bleu_mixed_batch_scores_each_language_with_its_tokenizer() -> None:
    metric = get_metric("bleu")
    hyps, refs = ES_HYPS + ZH_HYPS, ES_REFS + ZH_REFS
    langs = ["es"] * len(ES_HYPS) + ["zh-Hans"] * len(ZH_HYPS)
    mixed = metric.sentence_scores(hyps, refs, langs)
    alone_es = get_metric("bleu").sentence_scores(ES_HYPS, ES_REFS, "es")
    alone_zh = get_metric("bleu").sentence_scores(ZH_HYPS, ZH_REFS, "zh")
    np.testing.assert_allclose(mixed, np.concatenate([alone_es, alone_zh]))
    assert metric.signature() == (
        "BLEU|nrefs:1|case:mixed|eff:yes|tok:13a(es)+zh(zh)|smooth:exp|version:2.6.0"
    )


def test_bleu_forced_tokenizer_and_string_settings() -> None:
    metric = get_metric("bleu", tokenize="char", lowercase="true")
    metric.sentence_scores(["ab"], ["AB"], ["zh"])
    assert "tok:char" in metric.signature() and "case:lc" in metric.signature()
    with pytest.raises(ConfigError, match="tokenizer"):
        get_metric("bleu", tokenize="nonsense")


@pytest.mark.parametrize(
    ("module", "lang", "extra"),
    [("tokenizer_ja_mecab", "ja", "sacrebleu[ja]"), ("tokenizer_ko_mecab", "ko", "sacrebleu[ko]")],
)
def test_bleu_without_mecab_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, module: str, lang: str, extra: str
) -> None:
    # Simulate the missing extra whether or not MeCab happens to be installed.
    monkeypatch.setattr(importlib.import_module(f"sacrebleu.tokenizers.{module}"), "MeCab", None)
    with pytest.raises(MissingDependencyError) as info:
        get_metric("bleu").sentence_scores(["a"], ["a"], [lang])
    assert f'pip install "{extra}"' in str(info.value)
    # Other targets in the same process are unaffected.
    assert get_metric("bleu").sentence_scores(["a b"], ["a b"], ["en"])[0] == pytest.approx(100)


@pytest.mark.parametrize("name", ["chrf", "bleu"])
def test_length_mismatch_names_both_lengths(name: str) -> None:
    metric = get_metric(name)
    with pytest.raises(InputError, match="3 hypotheses but 2 references"):
        metric.sentence_scores(["a", "b", "c"], ["a", "b"], ["es"] * 3)
    with pytest.raises(InputError, match="2 hypotheses but 1 target_languages"):
        metric.sentence_scores(["a", "b"], ["a", "b"], ["es"])


@pytest.mark.parametrize("name", ["chrf", "chrf++", "bleu"])
def test_reference_based_metrics_reject_missing_references(name: str) -> None:
    metric = get_metric(name)
    with pytest.raises(InputError, match="reference"):
        metric.sentence_scores(["a"], None, ["es"])
    with pytest.raises(InputError, match="item 1 is NoneType"):
        metric.sentence_scores(["a", "b"], ["a", None], ["es", "es"])  # type: ignore[list-item]


@pytest.mark.parametrize("name", ["chrf", "bleu"])
def test_unknown_language_code_is_an_error(name: str) -> None:
    with pytest.raises(ConfigError, match="unknown language code 'xx'"):
        get_metric(name).sentence_scores(["a"], ["a"], ["xx"])


def test_registry_lists_the_builtins() -> None:
    get_metric("chrf")
    assert {"chrf", "chrf++", "bleu", "comet", "cometkiwi", "xcomet"} <= set(METRICS.names())
    assert get_metric("chrf++").name == "chrf++"
    assert get_metric("chrf").sentence_scores([], [], []).shape == (0,)
