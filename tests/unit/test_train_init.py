"""`routelmt train --init`: a trained in-model router refit on new labels, on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_inmodel_router import _examples, _source  # noqa: E402
from test_two_stage_router import LengthQE, _labelled  # noqa: E402

import routelmt.metrics.base as metrics_base  # noqa: E402
from routelmt.cli import main  # noqa: E402
from routelmt.errors import ConfigError  # noqa: E402
from routelmt.records import ScoredExample, Segment, write_records  # noqa: E402
from routelmt.routers import inmodel  # noqa: E402
from routelmt.routers.adapt import adapt_router  # noqa: E402
from routelmt.routers.artifacts import load_router  # noqa: E402
from routelmt.routers.inmodel import RouteLMTRouter  # noqa: E402
from routelmt.routers.provenance import read_training_sources  # noqa: E402
from routelmt.routers.simple import LengthRouter  # noqa: E402
from routelmt.routers.two_stage import TwoStageRouter, fit_two_stage_heads  # noqa: E402


def _new_direction(n: int = 15) -> list[ScoredExample]:
    """Labels of another direction: other sources, so the union of records grows."""
    out = []
    for ex in _labelled(n):
        seg = Segment(id="de-" + ex.id, direction="en-de", source=ex.segment.source + " today")
        out.append(ScoredExample(seg, "S", "L", ex.small_text, "b", "chrF2", ex.q_small, 50.0))
    return out


def _trained(source) -> TwoStageRouter:
    router = TwoStageRouter(inner_folds=3, stage1={"layer": 2, "source": source, "cv_folds": 3})
    router.qe = LengthQE()
    return router.fit(_labelled())


def test_array_fit_is_the_routers_fit():
    source = _source()
    train = _labelled()
    router = _trained(source)
    rest = router.stage2_inputs(
        [ex.segment for ex in train], [ex.small_text for ex in train], np.zeros(len(train))
    )[:, 1:]
    groups = np.asarray([ex.segment.group for ex in train])
    heads = fit_two_stage_heads(
        {2: source.layer(train, 2)},
        rest,
        np.array([ex.gain for ex in train]),
        groups,
        inner_folds=3,
        cv_folds=3,
    )
    test = _labelled(36)[30:]
    rest_test = router.stage2_inputs(
        [ex.segment for ex in test], [ex.small_text for ex in test], np.zeros(len(test))
    )[:, 1:]
    np.testing.assert_allclose(heads.score(source.layer(test, 2), rest_test), router.score(test))


def test_adapted_two_stage_router_saves_its_record_and_the_union_of_sources(tmp_path):
    source = _source()
    init = _trained(source)
    init.qe = "qe-embed"
    init.save(tmp_path / "init")
    init.qe = LengthQE()
    new = _new_direction()
    router = adapt_router(init, new, init_name=str(tmp_path / "init"))
    assert isinstance(router, TwoStageRouter) and router.layer == init.layer
    record = router.adapted
    assert record["init_router"] == "routelmt-2stage" and record["n_new"] == len(new)
    assert set(record["heads"]) == {"stage1", "stage2"}
    scores = router.score(new)
    assert scores.shape == (len(new),) and np.all(np.isfinite(scores))
    router.qe = "qe-embed"
    router.save(tmp_path / "adapted")
    sources = read_training_sources(tmp_path / "adapted")
    assert sources["n_examples"] == len(_labelled()) + len(new)
    assert any(dirs == ["en-de"] for dirs in sources["sources"].values())
    loaded = TwoStageRouter.load(tmp_path / "adapted", source=source)
    assert loaded.adapted == json.loads(json.dumps(record))
    loaded.qe = router.qe = LengthQE()
    np.testing.assert_allclose(loaded.score(new), router.score(new))


def test_adapting_the_probe_and_refusing_what_cannot_be_adapted():
    source = _source()
    init = RouteLMTRouter(layer=2, source=source, cv_folds=3).fit(_examples(20))
    router = adapt_router(init, _examples(30)[20:], init_name="x")
    assert isinstance(router, RouteLMTRouter) and router.adapted["heads"]["probe"]["n"] == 10
    with pytest.raises(ConfigError, match="cannot be adapted"):
        adapt_router(LengthRouter(), _examples(5))


def test_cli_train_init(tmp_path, monkeypatch, capsys):
    source = _source()
    # the artifact names model "tiny-llama": its feature source is the tiny model here
    key = ("tiny-llama", source.template.name, "last", "float32")
    monkeypatch.setitem(inmodel._SOURCES, key, source)
    monkeypatch.setattr(metrics_base, "get_metric", lambda name, **kw: LengthQE())
    init = _trained(source)
    init.qe = "qe-embed"
    init.save(tmp_path / "init")
    labels = tmp_path / "labels.jsonl"
    write_records(labels, _new_direction())
    out = tmp_path / "adapted"
    argv = ["train", "-i", str(labels), "--init", str(tmp_path / "init"), "-o", str(out)]
    assert main(["-q", *argv]) == 0
    printed = capsys.readouterr().out
    assert '"adapted"' in printed and "saved" in printed
    adapted = load_router(out)
    assert adapted.adapted["init"] == str(tmp_path / "init")
    assert main(["-q", *argv, "--init-strength", "keep", "-o", str(tmp_path / "keep")]) == 0
    capsys.readouterr()
    kept = load_router(tmp_path / "keep")
    assert kept.adapted["heads"]["stage1"]["strength"] == "keep"
    np.testing.assert_allclose(kept.stage1.head.coef_, init.stage1.head.coef_)
    for extra, message in [
        (["--init-strength", "-1"], "expected auto, keep or a positive number"),
        (["--router", "routelmt"], "is a 'routelmt-2stage'"),
        (["--router-arg", "layer=3"], "does not apply with --init"),
    ]:
        assert main(["-q", *argv, *extra]) == 2
        assert message in capsys.readouterr().err
    bad = ["train", "-i", str(labels), "--init", str(tmp_path / "nope"), "-o", str(out)]
    assert main(["-q", *bad]) == 2
    assert "not a router artifact" in capsys.readouterr().err
    no_init = ["train", "-i", str(labels), "--init-strength", "keep", "-o", str(out)]
    assert main(["-q", *no_init]) == 2
    assert "--init-strength needs --init" in capsys.readouterr().err
