"""A real local Ray cluster for the Ray tests: ``ray start --head`` on a free port with 2 CPUs
and token authentication, shared by the tests of this package and stopped (SIGTERM to ``ray
start --block``, which stops what it started) after the last of them, its recorded address
removed with it. Package scope (this folder has an ``__init__.py`` for it): an idle cluster's
processes took CPU from the rest of the suite, and its shutdown ran at the suite's end."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# the cluster uses token authentication; a process joining it by address says so before it
# imports ray (Ray reads the mode at import)
os.environ["RAY_AUTH_MODE"] = "token"


@dataclass
class Cluster:
    address: str
    src: str

    def driver_env(self) -> dict[str, str]:
        """The environment of a driver process that joins the cluster (this test's caches)."""
        env = {**os.environ, "RAY_AUTH_MODE": "token"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (self.src, env.get("PYTHONPATH")) if p)
        return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ray_cli() -> str:
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else shutil.which("ray") or "ray"


@pytest.fixture(scope="package")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    pytest.importorskip("ray")  # here, not at import: a conftest may not skip
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0"}
    src = str(Path(__file__).resolve().parents[2] / "src")  # workers import these sources
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    if not (Path.home() / ".ray" / "auth_token").is_file():
        subprocess.run(  # prints the token: keep it out of the logs
            [_ray_cli(), "get-auth-token", "--generate"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
    port = _free_port()
    logs = tmp_path_factory.mktemp("ray") / "ray-start.log"
    command = [_ray_cli(), "start", "--head", f"--port={port}", "--num-cpus=2"]
    command += ["--include-dashboard=false", "--disable-usage-stats", "--block"]
    with open(logs, "w") as out:
        head = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while "Ray runtime started" not in logs.read_text(errors="replace"):
        if head.poll() is not None or time.monotonic() > deadline:
            head.kill()
            pytest.fail(f"ray start failed:\n{logs.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    try:
        yield Cluster(address, src)
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        _forget_address(address)


def _forget_address(address: str) -> None:
    """``ray start`` records its address for later drivers and a stopped one leaves it there:
    remove the record if it is this cluster's, so no later run joins a dead address."""
    from routelmt.executors.ray_data import ray_address_file

    path = ray_address_file()
    try:
        recorded = path.read_text(encoding="utf-8").strip()
        if recorded.rpartition(":")[2] == address.rpartition(":")[2]:  # ray writes the node IP
            path.unlink()
    except OSError:
        pass
