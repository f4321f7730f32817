"""A port in use or a host that does not resolve: ``routelmt serve: error: ...`` and exit 2,
before the service claims to serve."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import yaml
from test_serve_crash import _write_replay


def _serve(tmp_path, *flags: str) -> subprocess.CompletedProcess[str]:
    _write_replay(tmp_path / "small.jsonl", "tiny", 2, lambda i: f"small {i}")
    config = {
        "small": str(tmp_path / "small.jsonl"),
        "large": str(tmp_path / "small.jsonl"),
        "router": {"name": "random"},
        "server": {"log_path": None, "directions": None},
    }
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "routelmt.cli", "serve", "--config", str(tmp_path / "serve.yaml")]
    return subprocess.run(cmd + list(flags), capture_output=True, text=True, timeout=60)


def test_a_port_in_use_is_a_clear_error_before_serving(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = _serve(tmp_path, "--port", str(port))
    assert done.returncode == 2, done.stderr
    assert f"routelmt serve: error: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "in use" in done.stderr
    assert "serving" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("host", ["no-such-host.invalid", "300.1.1.1"])
def test_a_host_that_does_not_resolve_is_a_clear_error(tmp_path, host):
    done = _serve(tmp_path, "--host", host, "--port", "0")
    assert done.returncode == 2, done.stderr
    assert f"routelmt serve: error: cannot listen on {host}:0" in done.stderr
    assert "serving" not in done.stderr and "Traceback" not in done.stderr
