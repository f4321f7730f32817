"""The decision log survives SIGKILL mid-load: every line parses, every answer is logged once."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from routelmt.serve.log import DecisionLog, read_decision_log, repair_tail


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_replay(path: Path, system: str, n: int, fn) -> None:
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"segment_id": f"s{i}", "system": system, "text": fn(i)}) + "\n")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_log_survives_a_kill_mid_load(tmp_path, sig):
    """SIGKILL: a crash; SIGTERM: a graceful stop that still answers what is in flight."""
    n = 400
    _write_replay(tmp_path / "small.jsonl", "tiny", n, lambda i: f"small {i}")
    _write_replay(tmp_path / "large.jsonl", "big", n, lambda i: f"large {i}")
    log_path = tmp_path / "decisions.jsonl"
    port = _free_port()
    config = {
        "small": str(tmp_path / "small.jsonl"),
        "large": str(tmp_path / "large.jsonl"),
        "router": {"name": "random"},
        "server": {
            "port": port,
            "log_path": str(log_path),
            "log_text": True,
            "directions": None,
        },
    }
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "routelmt.cli", "serve", "--config", str(tmp_path / "serve.yaml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)

        answered: list[str] = []
        failures: list[int] = []
        lock = threading.Lock()
        stop = threading.Event()

        def client(k: int) -> None:
            i = k
            with httpx.Client(base_url=url, timeout=10) as c:
                while not stop.is_set():
                    sid = f"s{i % n}"
                    try:
                        r = c.post("/v1/translate", json={"text": "x", "id": sid})
                    except httpx.HTTPError:
                        return  # the server died under us
                    if r.status_code != 200:
                        with lock:
                            failures.append(r.status_code)
                    else:
                        with lock:
                            answered.append(r.json()["request_id"])
                    i += 8

        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        os.kill(proc.pid, sig)
        code = proc.wait(timeout=30)
        stop.set()
        for t in threads:
            t.join(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert len(answered) > 20, "too little load to mean anything"
    assert failures == []  # no request was refused or failed while the server lived
    if sig == signal.SIGTERM:
        assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained
        assert log_path.read_bytes().endswith(b"\n")
    raw = log_path.read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1]
    records = [json.loads(line) for line in complete.splitlines()]  # no torn line
    logged = [r["request_id"] for r in records]
    assert len(set(logged)) == len(logged)  # nothing logged twice
    assert set(answered) <= set(logged)  # every answered request is in the log
    for r in records:
        assert r["translation"] in (f"small {r['id'][1:]}", f"large {r['id'][1:]}")
    # reopening repairs a torn tail if the kill cut one; then the whole file parses
    DecisionLog(log_path).close()
    assert len(read_decision_log(log_path)) == len(records)
    assert log_path.read_bytes().endswith(b"\n")


def test_torn_tail_is_moved_aside(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"a":1}\n{"b":2}\n{"c":')
    assert repair_tail(path) == 5
    assert path.read_bytes() == b'{"a":1}\n{"b":2}\n'
    assert (tmp_path / "log.jsonl.torn").read_bytes() == b'{"c":\n'
    log = DecisionLog(path)
    futures = [log.append([{"i": i}]) for i in range(50)]
    for f in futures:
        f.result(timeout=10)
    log.close()
    assert [r.get("i") for r in read_decision_log(path)][2:] == list(range(50))
    assert log.commits <= 50 and log.lines == 50
