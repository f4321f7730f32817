"""The live-model replay: the service decodes the small translation itself, labels come after.

No model runs here: a tiny fake small translator (the bench's text, or a changed one for chosen
segments) and a fake two-stage router (its stage-2 score is exactly the served gain, so the top-k
of the service's own scores is the oracle) stand in for llama.cpp and the shipped router, behind
the real ``TranslationService``, pacers and client loop. Labels are real chrF against the
references. tests/integration/test_live_model_real.py runs the real model on 3 segments.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from routelmt.backends.base import Translator
from routelmt.errors import ConfigError
from routelmt.labels import score_pairs
from routelmt.metrics.base import get_metric
from routelmt.records import Segment, Translation, write_records
from routelmt.serve.config import DEFAULTS
from routelmt.serve.live_model import (
    LivePlan,
    LiveVariant,
    ServedLabels,
    bench_metric,
    compare_live,
    label_order,
    live_config,
    live_stream,
    parse_live_variant,
    serve_order,
)
from routelmt.serve.live_replay import LabelledStream, compare_online_offline

ROOT = Path(__file__).resolve().parents[2]
WORDS = ["el", "gato", "come", "pan", "con", "la", "luna", "sobre", "mar", "perro", "casa"]
CHRF = get_metric("chrf")


def make_stream(direction: str = "en-es", n: int = 120, seed: int = 0) -> LabelledStream:
    """References of 4-14 words; the large system copies them, the small one drops words."""
    rng = np.random.default_rng(seed)
    segs, small = [], []
    for i in range(n):
        ref = " ".join(rng.choice(WORDS, int(rng.integers(4, 15))))
        words = ref.split()
        kept = [w for w in words if rng.random() > rng.uniform(0, 0.8)] or words[:1]
        segs.append(
            Segment(f"{direction}-{i}", direction, "x" * len(ref), ref, doc_id=f"d{i // 6}")
        )
        small.append(" ".join(kept))
    large = [s.reference for s in segs]
    q_small = np.asarray(score_pairs(CHRF, segs, small))
    q_large = np.asarray(score_pairs(CHRF, segs, large))
    gain = q_large - q_small
    return LabelledStream(
        direction,
        segs,
        small,
        large,
        q_small,
        q_large,
        gain + rng.normal(0, 20, n),
        gain + rng.normal(0, 8, n),
    )


class FakeSmall(Translator):
    """The bench's small translation, with its last word dropped for the ``drift`` ids; keeps
    the size of every batch it was given."""

    name = "fake-small"
    kind = "fake"

    def __init__(self, stream: LabelledStream, drift: set[str] = frozenset()) -> None:
        self.texts = dict(zip((s.id for s in stream.segments), stream.small_texts, strict=True))
        self.drift = drift
        self.batches: list[int] = []

    def translate(self, segments: Sequence[Segment]) -> list[str]:
        self.batches.append(len(segments))
        out = []
        for s in segments:
            text = self.texts[s.id]
            out.append(text.rsplit(" ", 1)[0] + " ?" if s.id in self.drift else text)
        return out


class FakeTwoStage:
    """Stage 1: ``stage1`` by id; stage 2: the served gain itself (q(large) - chrF of the text)."""

    name = "fake-2stage"

    def __init__(self, stream: LabelledStream) -> None:
        self.refs = {s.id: s for s in stream.segments}
        self.q_large = dict(zip(self.refs, stream.q_large, strict=True))
        self.stage1 = dict(zip(self.refs, stream.stage1, strict=True))

    def score(self, batch: Sequence[Segment]) -> np.ndarray:
        return np.asarray([self.stage1[s.id] for s in batch])

    def score_stage2(
        self, segments: Sequence[Segment], texts: Sequence[str], stage1: np.ndarray
    ) -> np.ndarray:
        q = score_pairs(CHRF, [self.refs[s.id] for s in segments], texts)
        return np.asarray([self.q_large[s.id] - v for s, v in zip(segments, q, strict=True)])


def fake_factory(stream: LabelledStream, small: FakeSmall):
    """``build_service``'s stand-in: the real service and pacers over the fakes."""
    from routelmt.hybrid import HybridTranslator, SecondStage
    from routelmt.serve.service import TranslationService, make_pacers

    def make(config: dict, *, large: Translator):
        router = FakeTwoStage(stream)
        pacer, pacer2 = make_pacers(config["budget"], router, None)
        hybrid = HybridTranslator(
            small, large, router, pacer, second_stage=SecondStage(router, pacer2)
        )
        server = config["server"]
        return TranslationService(
            hybrid,
            log_path=None,
            batching=server["batching"],
            max_batch_size=server["max_batch_size"],
            max_wait_ms=server["max_wait_ms"],
        )

    return make


def variant(text: str = "v:share=0.3") -> LiveVariant:
    return parse_live_variant(text, {**DEFAULTS["budget"], "share": 0.3}, DEFAULTS["server"])[1]


def test_variants_take_budget_and_server_keys_and_refuse_unknown_ones():
    base = {**DEFAULTS["budget"], "share": 0.3}
    name, got = parse_live_variant(
        "alone:batching=false,stage1_share=0.1,server.max_wait_ms=2,budget.rule=integral",
        base,
        DEFAULTS["server"],
    )
    assert name == "alone" and got.server == {"batching": False, "max_wait_ms": 2}
    assert got.budget["stage1_share"] == 0.1 and got.budget["rule"] == "integral"
    assert got.budget["share"] == 0.3 and set(got.budget) == set(base)
    for bad in ("x:nope=1", "x:guard.name=x", "x:server.share=0.2", "x:batching"):
        with pytest.raises(ConfigError):
            parse_live_variant(bad, base, DEFAULTS["server"])
    config = live_config(LivePlan(small="llamacpp:gemma3-270m"), got)
    assert config["server"]["batching"] is False and config["server"]["log_path"] is None
    assert config["router"] == {"path": "shipped:routelmt-2stage"}


def test_the_live_table_equals_the_replayed_one_when_the_service_served_the_bench_texts():
    """Same labels and scores: online, offline and length as in ``compare_online_offline``,
    and the top-k of the service's own scores equals the offline top-k when they are the same."""
    stream = make_stream(n=200)
    rng = np.random.default_rng(1)
    routed, sent, labels = [], [], []
    for _ in range(2):
        s = rng.random(200) < 0.8
        m = s & (rng.random(200) < 0.3)
        routed.append(m)
        sent.append(s)
        labels.append(ServedLabels(s, m, stream.gains, stream.stage2.copy(), int(s.sum()), 0, 0.0))
    live = compare_live(stream, labels, n_boot=40)
    replay = compare_online_offline(stream, routed, served=sent, n_boot=40)
    for name in ("online", "offline", "length", "online-offline", "online-length"):
        assert live[name] == pytest.approx(replay[name]), name
    assert live["own"] == pytest.approx(live["offline"])


def test_one_at_a_time_serves_the_bench_texts_and_its_own_scores_are_the_oracle():
    stream = make_stream(n=150)
    small = FakeSmall(stream)
    plan = LivePlan(
        orders=2, concurrency=3, limit=120, n_boot=30, make_service=fake_factory(stream, small)
    )
    out = live_stream(stream, plan, variant("v:batching=false"), CHRF)
    assert set(small.batches) == {1} and out["batching"] is False  # one request at a time
    assert out["n"] == 120 and out["decoded"] == 120 and out["differ"] == 0
    assert out["label_check"] == pytest.approx(0.0, abs=1e-9)  # chrF again: the bench's labels
    assert abs(out["realised_share"] - 0.3) < 0.07
    # the fake's stage-2 score is the served gain: its own top-k is the oracle's
    assert out["own"]["value"] == pytest.approx(100.0)
    assert out["online"]["value"] < 100.0 and out["online-own"]["ci_high"] <= 1e-9
    assert out["online-length"]["value"] > 0 and len(out["orders"]) == 2
    assert out["router_overlap"] is not None  # the shipped artifact records its sources
    assert out["router_overlap"]["same_source"] == 0


def test_a_changed_small_translation_is_labelled_and_scored_as_served():
    stream = make_stream(n=60)
    drift = {s.id for s in stream.segments[::4]}
    small = FakeSmall(stream, drift)
    config = live_config(LivePlan(), variant())
    order = np.arange(60)[::-1]
    served = serve_order(config, stream, order, 4, fake_factory(stream, small))
    lab = label_order(stream, served, CHRF)
    assert lab.decoded == 60 and lab.differ == len(drift)
    ids = [s.id for s in stream.segments]
    changed = [i for i, sid in enumerate(ids) if sid in drift]
    texts = [served.texts[ids[i]] for i in changed]
    assert all(t.endswith(" ?") for t in texts)
    q = np.asarray(score_pairs(CHRF, [stream.segments[i] for i in changed], texts))
    assert np.allclose(lab.gains[changed], stream.q_large[changed] - q)
    assert not np.allclose(lab.gains[changed], stream.gains[changed])
    assert np.allclose(lab.scores, lab.gains)  # the service ranked the gains it served
    assert lab.routed.sum() == served.large.sum() and lab.sent.all()


def test_a_request_sent_large_before_its_decode_keeps_the_bench_label_and_ranks_first():
    stream = make_stream(n=100)
    small = FakeSmall(stream)
    config = live_config(LivePlan(), variant("v:stage1_share=0.5,warmup=5"))
    served = serve_order(config, stream, np.arange(100), 2, fake_factory(stream, small))
    lab = label_order(stream, served, CHRF)
    first = served.stage == 1
    assert first.any() and lab.decoded == 100 - first.sum()
    assert np.all(np.isinf(lab.scores[first])) and np.all(lab.scores[first] > 0)
    assert np.allclose(lab.gains[first], stream.gains[first])
    assert sum(small.batches) == lab.decoded


def write_run(root: Path, streams: list[LabelledStream]) -> Path:
    """A bench run's folders, its score stages recording the metric."""
    segs = [s for st in streams for s in st.segments]
    write_records(root / "data" / "segments.jsonl", segs)
    systems = (("small-sys", "small_texts", "q_small"), ("GPT-4", "large_texts", "q_large"))
    for system, texts, q in systems:
        rows = [
            Translation(s.id, system, t)
            for st in streams
            for s, t in zip(st.segments, getattr(st, texts), strict=True)
        ]
        write_records(root / "translate" / system / "translations.jsonl", rows)
        values = [float(v) for st in streams for v in getattr(st, q)]
        rows = [{"segment_id": s.id, "q": v} for s, v in zip(segs, values, strict=True)]
        write_records(root / "score" / system / "scores.jsonl", rows)
        stage = {"stage": f"score/{system}", "settings": {"metric": "chrf", "args": {}}}
        (root / "score" / system / "stage.json").write_text(json.dumps(stage))
    for router, stage in (("routelmt", "stage1"), ("routelmt-2stage", "stage2")):
        folder = root / "routers" / "GPT-4" / router
        folder.mkdir(parents=True)
        values = [float(v) for st in streams for v in getattr(st, stage)]
        (folder / "scores.json").write_text(
            json.dumps({"ids": [s.id for s in segs], "scores": values})
        )
    return root


def test_the_bench_script_runs_the_live_mode(tmp_path, capsys, monkeypatch):
    streams = [make_stream("en-es", 60), make_stream("en-de", 60, seed=2)]
    run = write_run(tmp_path / "run", streams)
    assert bench_metric(run, "GPT-4").name == "chrf"
    smalls = {st.direction: FakeSmall(st) for st in streams}

    def make(config, *, large):
        st = next(s for s in streams if s.segments[0].id in large)
        return fake_factory(st, smalls[st.direction])(config, large=large)

    monkeypatch.setattr("routelmt.serve.service.build_service", make)
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import live_replay

    args = ["--run", str(run), "--live-small", "llamacpp:gemma3-270m", "--orders", "1"]
    args += ["--concurrency", "2", "--boot", "10", "--small-option", "threads=1"]
    code = live_replay.main([*args, "-o", str(tmp_path / "rows.json")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("| batched | en-") == 2 and out.count("| one at a time | en-") == 2
    assert "online - own" in out and "live small llamacpp:gemma3-270m" in out
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert {r["batching"] for r in rows} == {True, False}
    assert all(r["differ"] == 0 for r in rows)
    assert live_replay.main([*args, "--variant", "x:nope=1"]) == 2
    assert live_replay.main([*args, "--small-option", "threads"]) == 2
    sys.modules.pop("live_replay", None)
