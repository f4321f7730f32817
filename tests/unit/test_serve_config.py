"""Serve config: the shipped YAML is the schema's defaults; bad keys and types are named."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from routelmt.commands import serve as serve_cmd
from routelmt.errors import ConfigError
from routelmt.serve.app import languages_from_instruction
from routelmt.serve.config import DEFAULTS, load_config
from routelmt.serve.service import build_service

REPO = Path(__file__).resolve().parents[2]


def test_shipped_yaml_matches_the_schema_defaults():
    assert load_config(REPO / "configs" / "serve.yaml") == DEFAULTS


def test_unknown_key_and_wrong_type_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  prot: 80\n")
    with pytest.raises(ConfigError, match=r"unknown key 'server.prot'.*port"):
        load_config(bad)
    bad.write_text("budget:\n  share: lots\n")
    with pytest.raises(ConfigError, match="'budget.share' must be"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_cli_flags_override_the_file(tmp_path):
    parser = argparse.ArgumentParser()
    serve_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["serve", "--port", "9001", "--budget", "0.2", "--no-batching", "--large", "x.jsonl"]
    )
    config = load_config(None, serve_cmd.overrides_from_args(args))
    assert config["server"]["port"] == 9001 and config["server"]["batching"] is False
    assert config["budget"]["share"] == 0.2 and config["large"] == "x.jsonl"


def test_build_service_skips_unavailable_small_backends(tmp_path):
    row = {"segment_id": "a", "system": "s", "text": "A"}
    (tmp_path / "s.jsonl").write_text(json.dumps(row) + "\n")
    config = load_config(
        None,
        {
            "small": [str(tmp_path / "missing.jsonl"), str(tmp_path / "s.jsonl")],
            "large": str(tmp_path / "s.jsonl"),
            "server": {"log_path": None},
            "budget": {"store": str(tmp_path / "b.sqlite")},
            "router": {"name": "length"},
        },
    )
    service = build_service(config)
    try:
        assert service.hybrid.small.name == "s"
        assert service.health()["budget"]["store"] == str(tmp_path / "b.sqlite")
    finally:
        service.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Translate from English to German.", ("en", "de")),
        ("translate the text from en into es", ("en", "es")),
        ("Please translate to Ukrainian", (None, "uk")),
        ("You are a helpful assistant.", (None, None)),
        ("Translate into Brazilian Portuguese.", (None, "pt")),
        ("Translate to zh-Hans", (None, "zh")),
        ("translate it to preserve the tone, into French", (None, "fr")),
        ("Translate from time to time into German", (None, "de")),
        ("From Monday to Friday we work. Translate to Italian", (None, "it")),
        ("You are a translator. Reply to John in Spanish.", (None, None)),
        ("Translate to the user's language", (None, None)),
    ],
)
def test_languages_from_system_message(text, expected):
    assert languages_from_instruction(text) == expected


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("Translate to Klingon", "Klingon"),
        ("Translate from Klingon to English.", "Klingon"),
        ("translate to klingon language", "klingon"),
        ("Please translate this into Esperanto please", "Esperanto"),
        ("Translate into tlh-KX", "tlh-KX"),
    ],
)
def test_an_unknown_language_in_a_system_message_is_refused(text, word):
    from routelmt.serve.instructions import UnknownLanguage

    with pytest.raises(UnknownLanguage) as err:
        languages_from_instruction(text)
    assert err.value.word == word and "does not know" in str(err.value)


def test_yaml_is_plain_yaml():
    assert isinstance(yaml.safe_load((REPO / "configs" / "serve.yaml").read_text()), dict)


def test_router_from_a_path_names_what_is_wrong(tmp_path):
    from routelmt.errors import InputError
    from routelmt.serve.service import make_router

    router, name = make_router({"name": "random", "seed": 3})
    assert name == "random" and router.seed == 3
    with pytest.raises(InputError, match="not a router artifact"):
        make_router({"path": str(tmp_path / "nowhere")})
    (tmp_path / "router.json").write_text(json.dumps({"router": "length"}))
    with pytest.raises(InputError, match="cannot be loaded"):
        make_router({"path": str(tmp_path)})
    with pytest.raises(ConfigError, match="'router' needs"):
        load_config(None, {"router": {"unit": "words"}})


def test_the_default_router_is_the_shipped_two_stage_one_with_a_split_budget():
    from routelmt.serve.service import make_pacers

    config = load_config(None)
    assert config["router"] == {"path": "shipped:routelmt-2stage"}

    class TwoStage:  # only the capability matters here
        def score_stage2(self, segments, texts, stage1):
            return [0.0] * len(texts)

    budget = {**config["budget"], "share": 0.3, "stage1_share": 0.25, "hard_cap": 100}
    first, second = make_pacers(budget, TwoStage())
    s1, s2 = first.spec.share, second.spec.share
    assert s1 == pytest.approx(0.075) and s1 + (1 - s1) * s2 == pytest.approx(0.3)
    assert first.joint is second.joint and first.joint.cap == 100  # one cap, not split
    single, none = make_pacers(budget, object())
    assert none is None and single.spec.share == 0.3
    for bad in (1.0, -0.1):
        with pytest.raises(ConfigError, match="stage1_share"):
            make_pacers({**budget, "stage1_share": bad}, TwoStage())
    # 0: stage 2 spends the whole budget; stage 1 sends only forced requests
    off, whole = make_pacers({**budget, "stage1_share": 0}, TwoStage())
    assert whole.spec.share == pytest.approx(0.3) and whole.spec.hard_cap == pytest.approx(100)
    assert not off.decide(1e9).large
    forced = off.decide(None, force=True)
    assert forced.large and whole.state()["spent"] == 1.0  # charged to the whole budget
    assert off.refund(forced) and whole.state()["spent"] == 0.0


@pytest.mark.parametrize(
    ("flag", "value", "accepted"),
    [
        ("stage1_share", 0, True),
        ("stage1_share", 1, False),
        ("stage1_share", 1.5, False),
        ("share", 0, False),
        ("share", 1.2, False),
        ("rule", "quantile", True),
        ("rule", "nope", False),
        ("cost_large", -1, False),
    ],
)
def test_the_budget_is_checked_when_the_config_loads(flag, value, accepted):
    """What make_pacers would refuse once the models load is refused by load_config (and so by
    --print-config); what it accepts, load_config accepts."""
    overrides = {"budget": {flag: value}}
    if flag == "cost_large":
        overrides["budget"]["cost_share"] = 0.3
    if accepted:
        assert load_config(None, overrides)["budget"][flag] == value
    else:
        with pytest.raises(ConfigError, match="budget"):
            load_config(None, overrides)


def test_print_config_accepts_a_stage1_share_of_0_and_refuses_1(monkeypatch, capsys):
    from routelmt.cli import main

    monkeypatch.setenv("ROUTELMT_SERVE__BUDGET__STAGE1_SHARE", "0")
    assert main(["serve", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["budget"]["stage1_share"] == 0
    monkeypatch.setenv("ROUTELMT_SERVE__BUDGET__STAGE1_SHARE", "1")
    assert main(["serve", "--print-config"]) == 2
    assert "budget.stage1_share" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("budget", "tiers", "message"),
    [
        ({"hard_cap": 0.35}, [], "must be a whole number of large-model requests"),
        ({"hard_cap": 12.5}, [], "must be a whole number"),
        ({"hard_cap": 0.5, "share": None, "cost_share": 0.3, "cost_large": 2.0}, [], "below one"),
        ({"hard_cap": 0.1}, [{"name": "big", "backend": "GPT-4", "cost": 0.2}], "cheapest tier"),
    ],
)
def test_a_fractional_hard_cap_is_refused(tmp_path, budget, tiers, message):
    path = tmp_path / "cap.yaml"
    path.write_text(yaml.safe_dump({"budget": budget, "tiers": tiers}))
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert "absolute count, not a share" in str(err.value)


def test_hard_cap_is_described_as_a_count_and_a_whole_one_is_taken(capsys):
    from routelmt.cli import main

    with pytest.raises(SystemExit) as done:
        main(["serve", "--help-config"])
    assert done.value.code == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "budget.hard_cap" in x]
    assert "absolute count, not a share" in line and "a share never" not in line
    assert main(["serve", "--hard-cap", "0.35", "--print-config"]) == 2
    assert "routelmt serve: error:" in capsys.readouterr().err
    assert load_config(None, {"budget": {"hard_cap": 30.0}})["budget"]["hard_cap"] == 30.0
    cost = {"share": None, "cost_share": 0.2, "cost_large": 0.5, "hard_cap": 2.25}
    assert load_config(None, {"budget": cost})["budget"]["hard_cap"] == 2.25
