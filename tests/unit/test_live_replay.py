"""The live-replay bench: a labelled stream through HybridTranslator and the service's pacers.

The stream is synthetic (scores = gain + noise): what it tests is the replay and the paired
comparison, which no real model is needed for; the bench's numbers come from a real bench run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from routelmt.errors import ConfigError, InputError
from routelmt.records import Segment, Translation, write_records
from routelmt.serve.config import DEFAULTS
from routelmt.serve.live_replay import (
    LabelledStream,
    RecordedScores,
    ReplayPlan,
    build_hybrid,
    compare_online_offline,
    load_bench_run,
    parse_variant,
    replay_order,
    replay_stream,
)

ROOT = Path(__file__).resolve().parents[2]


def make_stream(direction: str = "en-es", n: int = 400, seed: int = 0) -> LabelledStream:
    rng = np.random.default_rng(seed)
    q_small = rng.normal(50, 15, n)
    gain = rng.normal(5, 10, n)
    segs = [
        Segment(id=f"{direction}-{i}", direction=direction, source="w" * int(rng.integers(5, 200)))
        for i in range(n)
    ]
    return LabelledStream(
        direction,
        segs,
        [f"small {i}" for i in range(n)],
        [f"large {i}" for i in range(n)],
        q_small,
        q_small + gain,
        gain + rng.normal(0, 14, n),
        gain + rng.normal(0, 6, n),
    )


def budget(**changes) -> dict:
    return {**DEFAULTS["budget"], "share": 0.3, **changes}


def test_the_replay_decides_on_the_recorded_scores_through_both_pacers():
    stream = make_stream()
    hybrid = build_hybrid([stream], budget(stage1_share=0.25), None)
    got = replay_order(hybrid, stream.segments, concurrency=8)
    assert abs(got["large"].mean() - 0.3) < 0.05
    assert set(np.unique(got["stage"][got["large"]])) == {1, 2}  # both stages sent some
    # stage 1 decided on the prefill score it was given, stage 2 on the recorded final score
    assert hybrid.pacer.state()["requests"] == len(stream.segments)
    assert (
        hybrid.second_stage.pacer.state()["requests"] == (~got["large"] | (got["stage"] == 2)).sum()
    )


def test_a_small_translation_other_than_the_recorded_one_is_refused():
    stream = make_stream(n=10)
    router = RecordedScores([stream])
    with pytest.raises(InputError, match="differs"):
        router.score_stage2(stream.segments[:1], ["another text"], np.zeros(1))


def test_online_equals_offline_when_the_routed_set_is_the_offline_top_k():
    stream = make_stream()
    k = 120
    mask = np.zeros(len(stream.segments), dtype=bool)
    mask[np.argsort(-stream.stage2, kind="stable")[:k]] = True
    table = compare_online_offline(stream, [mask, mask], n_boot=50)
    assert table["online"]["value"] == pytest.approx(table["offline"]["value"], abs=1e-9)
    assert table["online-offline"]["ci_low"] == pytest.approx(0.0, abs=1e-9)
    # length knows nothing of these gains: the router's top-k beats it, paired
    assert table["online-length"]["ci_low"] > 0


def test_warm_start_and_quantile_rule_keep_the_first_requests_near_the_budget():
    stream = make_stream(n=600)
    other = make_stream("en-de", n=600, seed=1)
    from routelmt.serve.live_replay import leave_direction_out

    prior = leave_direction_out({"en-es": stream, "en-de": other}, "en-es")
    plan = ReplayPlan(budget(stage1_share=0.0, rule="quantile"), orders=3, n_boot=50)
    out = replay_stream(stream, plan, prior)
    assert abs(out["realised_share"] - 0.3) < 0.02
    assert abs(out["head_overspend"]["mean"]) <= 0.04
    assert out["stage1_part"] == 0.0  # stage 1 given no share sends nothing
    assert out["online-length"]["value"] > 0
    assert len(out["orders"]) == 3


def test_variants_parse_onto_the_budget_section_and_refuse_unknown_keys():
    name, got = parse_variant("x:rule=integral,prior=false,stage1_share=0", budget())
    assert name == "x" and got["rule"] == "integral" and got["prior"] is False
    assert got["stage1_share"] == 0
    with pytest.raises(ConfigError, match="unknown budget key"):
        parse_variant("x:nope=1", budget())


def write_run(root: Path, streams: list[LabelledStream]) -> Path:
    segs = [s for st in streams for s in st.segments]
    write_records(root / "data" / "segments.jsonl", segs)
    for system, texts, q in (
        ("small-sys", "small_texts", "q_small"),
        ("GPT-4", "large_texts", "q_large"),
    ):
        rows = [
            Translation(s.id, system, t)
            for st in streams
            for s, t in zip(st.segments, getattr(st, texts), strict=True)
        ]
        write_records(root / "translate" / system / "translations.jsonl", rows)
        scores = [
            {"segment_id": s.id, "q": float(v)}
            for st in streams
            for s, v in zip(st.segments, getattr(st, q), strict=True)
        ]
        write_records(root / "score" / system / "scores.jsonl", scores)
    for router, stage in (("routelmt", "stage1"), ("routelmt-2stage", "stage2")):
        folder = root / "routers" / "GPT-4" / router
        folder.mkdir(parents=True)
        values = [float(v) for st in streams for v in getattr(st, stage)]
        (folder / "scores.json").write_text(
            json.dumps({"ids": [s.id for s in segs], "scores": values})
        )
    return root


def test_the_bench_reads_a_bench_run_and_prints_the_paired_table(tmp_path, capsys, monkeypatch):
    streams = [make_stream("en-es", 200), make_stream("en-de", 200, seed=3)]
    run = write_run(tmp_path / "run", streams)
    loaded = load_bench_run(run, "GPT-4")
    assert sorted(loaded) == ["en-de", "en-es"]
    assert np.allclose(loaded["en-es"].stage2, streams[0].stage2)
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import live_replay

    code = live_replay.main(
        [
            "--run",
            str(run),
            "--orders",
            "2",
            "--concurrency",
            "1,4",
            "--boot",
            "20",
            "--variant",
            "a:rule=quantile,stage1_share=0",
            "-o",
            str(tmp_path / "rows.json"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("| a | en-") == 4 and "online - offline" in out
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert {r["concurrency"] for r in rows} == {1, 4}
    assert live_replay.main(["--run", str(tmp_path / "nothing")]) == 2
    sys.modules.pop("live_replay", None)


def test_the_shipped_distribution_starts_the_pacer_warm_and_health_reports_the_gap(tmp_path):
    from routelmt.budget.score_distribution import StageDistributions

    streams = [make_stream("en-es", 200), make_stream("en-de", 200, seed=3)]
    run = write_run(tmp_path / "run", streams)
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import score_distribution

        assert score_distribution.main(["--run", str(run), "--into", str(tmp_path / "art")]) == 0
        assert (
            score_distribution.main(["--run", str(run), "--into", str(tmp_path), "--stages", "x"])
            == 2
        )
    finally:
        sys.path.pop(0)
        sys.modules.pop("score_distribution", None)
    dists = StageDistributions.read(tmp_path / "art")
    pooled = np.concatenate([s.stage2 for s in streams])
    assert dists.get("stage2").quantile(0.7) == pytest.approx(np.quantile(pooled, 0.7), abs=1e-5)
    assert dists.get("stage2", "en-de").n == 200 and dists.get("stage1", "xx-yy") is dists.get(
        "stage1"
    )
    hybrid = build_hybrid(streams, budget(stage1_share=0.25), dists)
    pacer2 = hybrid.second_stage.pacer
    assert not pacer2.state()["warming_up"]  # no blind warm-up: it starts at the quantile
    expected = dists.get("stage2").threshold_for(pacer2.p)
    assert pacer2.threshold == pytest.approx(expected, abs=1e-9)
    replay_order(hybrid, streams[0].segments, concurrency=4)
    routing = hybrid.routing_state()
    assert routing["target_share"] == pytest.approx(0.3)
    assert abs(routing["realised_share"] - 0.3) < 0.05 and routing["requests"] == 200
    stage2 = routing["stages"]["stage2"]
    assert stage2["expected_threshold"] == pytest.approx(expected)
    assert stage2["threshold_gap"] == pytest.approx(stage2["next_threshold"] - expected)
    assert stage2["rule"] == "quantile"


def test_a_broken_distribution_file_is_a_config_error(tmp_path):
    from routelmt.budget.score_distribution import DISTRIBUTION_FILE, StageDistributions

    (tmp_path / DISTRIBUTION_FILE).write_text(
        '{"format": 1, "stages": {"stage1": {"all": {"quantiles": [1, 0]}}}}'
    )
    with pytest.raises(ConfigError, match="quantiles"):
        StageDistributions.read(tmp_path)
    assert StageDistributions.read(tmp_path / "none") is None


def test_recorded_streams_need_no_model_and_replay_through_the_bench(tmp_path, capsys, monkeypatch):
    """A WMT layout of 60 segments, three recorded systems: labels by chrF, out-of-fold scores."""
    from routelmt.serve.live_replay import recorded_streams

    rng = np.random.default_rng(0)
    words = ["casa", "perro", "gato", "sol", "luna", "mar", "rio", "pan"]
    txt = tmp_path / "wmt" / "txt"
    n = 60
    src = [" ".join(rng.choice(words, int(rng.integers(2, 9)))) for _ in range(n)]

    def put(path: Path, lines: list[str], head: str = "CANARY GUID 0-test") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(x + "\n" for x in [head, *lines]), encoding="utf-8")

    put(txt / "sources" / "en-es.txt", src)
    put(txt / "references" / "en-es.refA.txt", src)
    put(
        txt / "documents" / "en-es.docs",
        [f"news\tdoc-{i // 6}" for i in range(n)],
        "canary\tcanary",
    )
    noisy = [s if rng.random() < 0.5 else s[: len(s) // 2] for s in src]
    for system, lines in (("Big", src), ("Small", noisy), ("Other", src)):
        put(txt / "system-outputs" / "en-es" / f"{system}.txt", lines)
    streams = recorded_streams(["en-es"], "Small", "Big", "Other", data=tmp_path / "wmt")
    st = streams["en-es"]
    assert len(st.segments) == n and np.all(st.gains >= -1e-9)
    # the stage-2 score sees the small output (half of it dropped): it ranks the gain
    assert np.corrcoef(st.stage2, st.gains)[0, 1] > 0.5
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import live_replay

    args = ["--recorded", "Small,Big,Other", "--pairs", "en-es", "--data", str(tmp_path / "wmt")]
    args += ["--orders", "2", "--concurrency", "2", "--boot", "10", "--arrival", "documents"]
    assert live_replay.main([*args, "--variant", "v:stage1_share=0"]) == 0
    assert "| v | en-es | documents | 2 |" in capsys.readouterr().out
    assert live_replay.main(["--recorded", "Small,Big", "--pairs", "en-es"]) == 2
    sys.modules.pop("live_replay", None)


def test_health_carries_the_routing_block():
    from routelmt.serve.service import TranslationService

    stream = make_stream(n=50)
    service = TranslationService(build_hybrid([stream], budget(stage1_share=0), None))
    try:
        routing = service.health()["routing"]
    finally:
        service.close()
    assert routing["target_share"] == pytest.approx(0.3) and routing["requests"] == 0
    assert routing["stages"]["stage1"]["rule"] == "off"
    assert routing["stages"]["stage2"]["share"] == pytest.approx(0.3)
    assert routing["stages"]["stage2"]["expected_threshold"] is None  # no shipped distribution


def test_a_shorter_stream_is_compared_with_the_top_k_of_what_it_served():
    stream = make_stream(n=300)
    served = np.zeros(300, dtype=bool)
    served[::2] = True  # the stream sent every other segment
    idx = np.flatnonzero(served)
    mask = np.zeros(300, dtype=bool)
    mask[idx[np.argsort(-stream.stage2[idx], kind="stable")[:45]]] = True
    table = compare_online_offline(stream, [mask], served=[served], n_boot=30)
    assert table["online"]["value"] == pytest.approx(table["offline"]["value"], abs=1e-9)
    out = replay_stream(
        stream, ReplayPlan(budget(stage1_share=0), orders=2, n_boot=20, limit=120), None
    )
    assert out["n"] == 120 and abs(out["realised_share"] - 0.3) < 0.06


def test_the_same_stream_through_the_translation_service_and_its_batcher():
    stream = make_stream(n=200)
    plan = ReplayPlan(budget(stage1_share=0), orders=1, n_boot=20, concurrency=4, path="service")
    out = replay_stream(stream, plan, None)
    assert out["path"] == "service" and abs(out["realised_share"] - 0.3) < 0.05
    assert out["online-length"]["value"] > 0


def test_the_summary_line_takes_the_worst_row_of_each_variant():
    from routelmt.serve.live_replay import summarise_variants

    def row(variant, gap, over_mean, over_max, low, share=0.3):
        return {
            "variant": variant,
            "realised_share": share,
            "online-offline": {"value": gap},
            "head_overspend": {"mean": over_mean, "max": over_max},
            "online-length": {"ci_low": low},
        }

    text = summarise_variants(
        [
            row("a", -1.0, 0.01, 0.03, 5.0, 0.295),
            row("a", -3.0, -0.02, 0.0, 2.0, 0.305),
            row("b", 0.5, 0, 0, 1),
        ]
    )
    first, second = text.splitlines()
    assert first.startswith("a: online - offline mean -2.00, worst -3.00")
    assert (
        "largest mean +1.0, any order +3.0" in first
        and "smallest +2.0; share 0.295-0.305 (2 rows)" in first
    )
    assert second.startswith("b: ")
