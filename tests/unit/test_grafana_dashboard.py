"""docs/grafana-dashboard.json asks Prometheus only for what the service really exports: every
metric and label in its queries is checked against a scrape of /metrics of a real server, and
every routelmt metric the service exports is on the dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serve_fixtures import Reverse, make_service, serve

from routelmt.serve.breaker import BreakerTranslator, CircuitBreaker

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Sample name -> its label names, from a scrape after some traffic and a bad request."""
    service = make_service(large=BreakerTranslator(Reverse(), CircuitBreaker()))
    srv = serve(service)
    try:
        c = httpx.Client(base_url=srv.url, timeout=30)
        for i in range(12):
            body = {"texts": [f"text {'x' * i}", "more"], "policy": "large" if i == 3 else "auto"}
            assert c.post("/v1/translate", json=body).status_code == 200
        assert c.post("/v1/translate", json={"text": ""}).status_code == 400
        text = c.get("/metrics").text
    finally:
        srv.stop()
    out: dict[str, set[str]] = {}
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    for family in text_string_to_metric_families(text):
        # a labelled family with no sample yet (no guard, no fallback here) still has a name
        for suffix in suffixes.get(family.type, [""]):
            out.setdefault(family.name + suffix, set())
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def _label_names(exported: dict[str, set[str]], metric: str) -> set[str]:
    """Labels of a metric; a labelled family without samples yet: from the service's code."""
    from routelmt.serve.metrics import ServiceMetrics

    names = set(exported.get(metric, set()))
    metrics = ServiceMetrics()
    for attr in vars(metrics).values():
        name = getattr(attr, "name", None)
        if name and metric in {name, f"{name}_bucket", f"{name}_count", f"{name}_sum"}:
            names |= set(attr.label_names)
    return names


def _queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert board["templating"]["list"][0]["type"] == "datasource"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]


def test_every_queried_metric_and_label_is_exported(exported):
    for title, expr in _queries():
        metrics = re.findall(r"\b(?:routelmt|process)_[a-z0-9_]+\b", expr)
        assert metrics, f"{title}: no metric in {expr!r}"
        for name in metrics:
            assert name in exported, f"{title}: {name} is not exported by the service"
        known = set().union(*(_label_names(exported, m) for m in metrics)) | {"le"}
        for group in re.findall(r"by \(([^)]*)\)", expr):
            for label in (x.strip() for x in group.split(",")):
                assert label in known, f"{title}: no label {label!r} on {metrics}"
        for label in re.findall(r"\{(\w+)=", expr):
            assert label in known, f"{title}: no label {label!r} on {metrics}"


def test_every_routelmt_metric_is_on_the_dashboard(exported):
    queried = {m for _, e in _queries() for m in re.findall(r"\broutelmt_[a-z0-9_]+\b", e)}
    families = {
        re.sub(r"_(bucket|count|sum)$", "", n) for n in exported if n.startswith("routelmt")
    }
    for family in sorted(families):
        assert any(q == family or q.startswith(family + "_") for q in queried), family
