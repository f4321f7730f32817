"""A dead cluster's address left in Ray's ``ray_current_cluster`` file: joining it waited forever
(deaf to SIGTERM). Now: a new local instance for ``--ray`` with no address, a clear error for
``--ray auto``, within seconds. Only the file's location is substituted (a temp file); no Ray
cluster is started."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from routelmt.cli import main
from routelmt.errors import ConfigError
from routelmt.executors import ray_data
from routelmt.executors.ray_data import resolve_address


def _dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"  # nothing listens there any more


@pytest.fixture
def stale(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    path = tmp_path / "ray_current_cluster"
    path.write_text(_dead_address())
    return path


def test_no_address_and_a_dead_recorded_cluster_starts_a_local_one(stale, caplog):
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="routelmt"):
        assert resolve_address(None, address_file=stale) == "local"
    assert time.monotonic() - t0 < 10
    assert "does not answer" in caplog.text and str(stale) in caplog.text


def test_auto_and_a_dead_recorded_cluster_is_a_clear_error(stale):
    with pytest.raises(ConfigError) as err:
        resolve_address("auto", address_file=stale)
    message = str(err.value)
    assert str(stale) in message and stale.read_text() in message and "ray start --head" in message


def test_a_live_recorded_cluster_an_explicit_address_or_no_file_are_left_to_ray(
    tmp_path, stale, monkeypatch
):
    with socket.socket() as live:
        live.bind(("127.0.0.1", 0))
        live.listen(1)
        path = tmp_path / "live"
        path.write_text(f"127.0.0.1:{live.getsockname()[1]}\n")
        assert resolve_address(None, address_file=path) is None
        assert resolve_address("auto", address_file=path) == "auto"
    assert resolve_address("10.0.0.5:6379", address_file=stale) == "10.0.0.5:6379"
    assert resolve_address("local", address_file=stale) == "local"
    assert resolve_address(None, address_file=tmp_path / "missing") is None
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.9:6379")  # the user's own choice stands
    assert resolve_address(None, address_file=stale) is None


def test_serve_ray_auto_with_a_dead_recorded_cluster_exits_2(stale, monkeypatch, capsys):
    pytest.importorskip("ray")
    monkeypatch.setattr(ray_data, "ray_address_file", lambda: stale)
    t0 = time.monotonic()
    assert main(["serve", "--ray", "auto"]) == 2
    assert time.monotonic() - t0 < 30
    err = capsys.readouterr().err
    assert "routelmt serve: error: cannot join the Ray cluster" in err and "Traceback" not in err
