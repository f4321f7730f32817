"""Router capabilities are declared in routers.base and checked where a router is chosen; a
router module that fails to import is an error that names the import failure."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from routelmt.errors import ConfigError, InputError
from routelmt.registry import Registry
from routelmt.routers import ROUTERS, FeatureRouter, Router, capabilities, get_router, require
from routelmt.routers.artifacts import load_router, save_router

# what each built-in router can do beyond ``score`` (a rename or a lost method fails here)
EXPECTED = {
    "entropy": set(),
    "external-delta": {"save", "load"},
    "external-difficulty": {"save", "load"},
    "gain-oracle": set(),
    "length": set(),
    "quality-oracle": set(),
    "random": set(),
    "routelmt": {"score_features", "save", "load"},
    "routelmt-2stage": {"score_features", "second_stage", "shared_qe", "save", "load"},
    "routelmt-lora": {"save", "load"},
    "routelmt-q": {"score_features", "save", "load"},
}


def test_every_builtin_router_declares_what_it_can_do():
    builtin = {n for n in ROUTERS.names() if ROUTERS.get(n).__module__.startswith("routelmt.")}
    assert builtin == set(EXPECTED)
    for name, expected in EXPECTED.items():
        router = get_router(name)  # lazy: no model is loaded
        assert capabilities(router) == expected, name


def test_require_names_the_router_and_the_missing_capability():
    with pytest.raises(ConfigError, match=r"router 'length' .*\(save\) .*SavableRouter"):
        require(get_router("length"), "save", "a trained artifact")
    require(get_router("routelmt"), "score_features", "the shared prefill")  # no error


def test_save_router_refuses_a_router_without_state(tmp_path: Path):
    with pytest.raises(ConfigError, match="'random' cannot be used for a trained artifact"):
        save_router(get_router("random"), tmp_path / "out")


def test_a_duck_typed_feature_router_is_recognised():
    class Probe(Router):
        name = "probe-test"
        layer = 3

        def score(self, batch):
            return np.zeros(len(batch))

        def score_features(self, features):
            return features[:, 0]

    assert isinstance(Probe(), FeatureRouter)
    assert capabilities(Probe()) == {"score_features"}


def _package(tmp_path: Path, name: str, broken_error: str) -> str:
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text(
        f"from {name}.reg import REG\n\n@REG.register\nclass Good:\n    name = 'good'\n"
    )
    (pkg / "broken.py").write_text(
        f"from {name}.reg import REG\n{broken_error}\n\n"
        "@REG.register\nclass Broken:\n    name = 'broken'\n"
    )
    (pkg / "reg.py").write_text(
        f"from routelmt.registry import Registry\nREG = Registry('widget', package='{name}')\n"
    )
    return name


def test_a_module_that_fails_to_import_is_named_on_lookup(tmp_path: Path, monkeypatch, caplog):
    name = _package(tmp_path, "widgets_a", "import not_installed_dependency_xyz")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry = __import__(f"{name}.reg", fromlist=["REG"]).REG
    assert registry.get("good").name == "good"  # the others still load
    with pytest.raises(ConfigError) as err:
        registry.get("broken")
    message = str(err.value)
    assert "widget 'broken' is defined in widgets_a.broken, which failed to import" in message
    assert "No module named 'not_installed_dependency_xyz'" in message
    with pytest.raises(ConfigError, match=r"unknown widget 'other'.*widgets_a.broken failed"):
        registry.get("other")
    assert any("failed to import" in r.getMessage() for r in caplog.records)
    for module in [m for m in sys.modules if m.startswith(name)]:
        monkeypatch.delitem(sys.modules, module)


def test_any_import_error_counts_not_only_missing_modules(tmp_path: Path, monkeypatch):
    name = _package(tmp_path, "widgets_b", "raise RuntimeError('plugin misconfigured')")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry: Registry = __import__(f"{name}.reg", fromlist=["REG"]).REG
    with pytest.raises(ConfigError, match="RuntimeError: plugin misconfigured"):
        registry.get("broken")
    for module in [m for m in sys.modules if m.startswith(name)]:
        monkeypatch.delitem(sys.modules, module)


def test_an_artifact_of_a_router_whose_module_is_broken_names_the_failure(tmp_path, monkeypatch):
    monkeypatch.setattr(
        ROUTERS, "failures", [("routelmt.routers.fancy", frozenset({"fancy"}), "ImportError: x")]
    )
    (tmp_path / "router.json").write_text('{"router": "fancy"}')
    with pytest.raises(InputError, match="fancy.*routelmt.routers.fancy, which failed to import"):
        load_router(tmp_path)
