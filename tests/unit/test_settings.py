"""The one config system (routelmt.settings) behind bench and serve: defaults, types, ranges,
help and environment overrides come from one schema, merged by one rule."""

from __future__ import annotations

import pytest

from routelmt.cli import main
from routelmt.errors import ConfigError
from routelmt.pipeline.config import BenchSettings, load_bench_config
from routelmt.serve.config import DEFAULTS, ServeSettings, load_config
from routelmt.settings import defaults, describe, env_overrides, keys


def test_every_key_has_a_type_and_help_and_the_defaults_come_from_the_schema():
    for schema in (BenchSettings, ServeSettings):
        rows = describe(schema)
        assert rows and all(text for _, text, _ in rows)
        assert [dotted for dotted, _, _ in rows] == [k.dotted for k in keys(schema)]
    assert defaults(ServeSettings) == DEFAULTS
    assert defaults(BenchSettings)["evaluation"]["bootstrap"] == 1000


def test_environment_overrides_sit_between_the_files_and_the_flags(monkeypatch, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("data: {limit: 5}\nevaluation: {folds: 3}\n", encoding="utf-8")
    monkeypatch.setenv("ROUTELMT_BENCH__DATA__LIMIT", "7")
    monkeypatch.setenv("ROUTELMT_BENCH__EVALUATION__FOLDS", "4")
    loaded = load_bench_config([config], ["evaluation.folds=6"])
    assert loaded["data"]["limit"] == 7 and loaded["evaluation"]["folds"] == 6
    monkeypatch.setenv("ROUTELMT_SERVE__SERVER__PORT", "9001")
    monkeypatch.setenv("ROUTELMT_SERVE__BUDGET__SHARE", "0.2")
    serve = load_config(None, {"budget": {"share": 0.4}})
    assert serve["server"]["port"] == 9001 and serve["budget"]["share"] == 0.4


def test_environment_errors_name_the_variable(monkeypatch):
    monkeypatch.setenv("ROUTELMT_SERVE__SERVER__PROT", "80")
    with pytest.raises(
        ConfigError,
        match=r"\$ROUTELMT_SERVE__SERVER__PROT: unknown key 'server.prot'.*did you mean 'port'",
    ):
        load_config(None)
    monkeypatch.delenv("ROUTELMT_SERVE__SERVER__PROT")
    monkeypatch.setenv("ROUTELMT_SERVE__SERVER__PORT", "70000")
    with pytest.raises(ConfigError, match="'server.port' must be between 0 and 65535, got 70000"):
        load_config(None)
    assert env_overrides("X", {"X__A__B": "[1, 2]", "XA": "1", "X__": "2"}) == [
        ("$X__A__B", {"a": {"b": [1, 2]}})
    ]


def test_help_config_lists_every_key(capsys):
    with pytest.raises(SystemExit) as done:
        main(["bench", "--help-config"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for dotted, _, _ in describe(BenchSettings):
        assert dotted in out
    assert "ROUTELMT_BENCH__DATA__LIMIT=50" in out


@pytest.mark.parametrize(
    ("text", "line", "first", "key"),
    [
        ("budget:\n  share: 0.3\n  share: 0.5\n", 3, 2, "share"),
        ("server:\n  port: 1\nbudget: {}\nserver:\n  port: 2\n", 4, 1, "server"),
        ("tiers:\n  - {name: a, cost: 1, name: b}\n", 2, 2, "name"),
    ],
)
def test_a_key_given_twice_is_refused_with_file_and_line(tmp_path, text, line, first, key):
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    for load in (load_config, lambda p: load_bench_config([p])):
        with pytest.raises(ConfigError) as err:
            load(path)
        assert f"{path}:{line}: duplicate key '{key}' (first set on line {first})" in str(err.value)


def test_merge_keys_and_the_shipped_configs_load(tmp_path):
    from pathlib import Path

    from routelmt.settings import read_yaml_mapping

    path = tmp_path / "merge.yaml"
    path.write_text("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n")
    assert read_yaml_mapping(path)["other"] == {"x": 1, "y": 2}
    shipped = sorted((Path(__file__).parents[2] / "src/routelmt/configs").glob("*.yaml"))
    assert len(shipped) >= 4
    for config in shipped:  # serve.yaml once set server.max_prefill_chars twice
        read_yaml_mapping(config)


def test_dotted_settings_into_a_free_mapping_add_keys_and_a_whole_mapping_replaces(
    monkeypatch, tmp_path
):
    config = tmp_path / "c.yaml"
    config.write_text("small_options: {threads: 1, batch_size: 4}\n", encoding="utf-8")
    monkeypatch.setenv("ROUTELMT_BENCH__SMALL_OPTIONS__HEAD_SCREEN", "true")
    sets = ["small_options.copy_guard=4", "small_options.batch_size=8"]
    loaded = load_bench_config([config], sets)
    assert loaded["small_options"] == {
        "threads": 1, "batch_size": 8, "head_screen": True, "copy_guard": 4,
    }  # fmt: skip
    whole = load_bench_config([config], ["small_options={repair: zeroshot}"])
    assert whole["small_options"] == {"repair": "zeroshot"}  # the flag comes after the variable
