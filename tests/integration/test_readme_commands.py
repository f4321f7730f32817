"""Every command of README.md, as printed, on a tiny input: the real CLI in a fresh folder with
the real models and the real WMT24 data.

The commands are read from the README's code blocks, so a README edit is tested as it stands.
Each command runs exactly as printed, with at most these additions, which only shrink the work
or avoid a clash with other servers on this machine:

- ``--limit 3`` (``data``, ``evaluate``, ``train``), ``--bootstrap 20`` (``evaluate``),
  ``--set data.limit=2`` and a cheaper evaluation (``bench``); ``data.limit=6`` for ``make
  run``'s bench, enough for every trained router, whose metrics are checked;
- a free port in place of 8000 / 8001, and ``--port`` on the one ``serve`` that prints none.

``make test`` is this suite (CI runs it); ``make run`` is checked to be the bench command that
runs here. A README command that this test does not know how to run fails it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from bench_checks import DEFAULT_BENCH_SMALL, check_default_bench

# minutes on an idle machine; far longer when its cores are shared with other jobs
pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600)]
pytest.importorskip("torch")
pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
BENCH_TINY = [
    "--set",
    "data.limit=2",
    "--set",
    "small_options={max_new_tokens: 16}",
    "--set",
    "evaluation={folds: 2, bootstrap: 20, plots: false}",
]


def readme_blocks() -> list[tuple[str, str]]:
    """(language, text) of every fenced code block."""
    text = README.read_text(encoding="utf-8")
    return re.findall(r"```(\w+)\n(.*?)```", text, flags=re.S)


def shell_commands(block: str) -> list[str]:
    """One string per command: continuation lines and multi-line quotes joined, comments off."""
    commands: list[str] = []
    buffer = ""
    for line in block.splitlines():
        buffer = f"{buffer}\n{line}" if buffer else line
        if buffer.rstrip().endswith("\\"):
            continue
        try:
            words = shlex.split(buffer, comments=True)
        except ValueError:  # an open quote: the command goes on
            continue
        if words:
            commands.append(buffer.replace("\\\n", " ").strip())
        buffer = ""
    assert not buffer, f"unterminated command in README: {buffer!r}"
    return commands


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Shell:
    """Runs README commands in a fresh folder, as a user's shell would."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd, self.env = cwd, env
        self.servers: list[subprocess.Popen[str]] = []

    def run(self, command: str, timeout: float = 1800) -> str:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"{command}\n{done.stderr[-3000:]}"
        self.last_stderr = done.stderr
        return done.stdout

    def start(self, command: str, port: int) -> str:
        """A server command (``... &``), in the background until the test ends; its URL."""
        command = command.rstrip().removesuffix("&").strip()
        log = open(self.cwd / f"server-{port}.log", "w")  # noqa: SIM115 - closed with the test
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.servers.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert proc.poll() is None, (self.cwd / f"server-{port}.log").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"{command}: no /health within 300 s")

    def stop(self) -> None:
        for proc in self.servers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """One fresh folder for the whole README, as a user would use it."""
    work = tmp_path_factory.mktemp("readme") / "fresh"
    work.mkdir()
    (work / "configs").symlink_to(REPO / "configs")  # the checkout's relative paths
    return work


@pytest.fixture
def shell(wmt_root, workspace):
    bin_dir = str(Path(sys.executable).parent)  # where `routelmt` is installed
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(REPO / "src"),
        "ROUTELMT_DATA": str(wmt_root),
        "MPLCONFIGDIR": str(workspace / ".mpl"),
    }
    sh = Shell(workspace, env)
    yield sh
    sh.stop()


def tiny(command: str) -> str:
    """The command as printed, plus the additions the module docstring lists."""
    words = shlex.split(command, comments=True)
    if words[:1] != ["routelmt"]:
        return command
    sub = words[1]
    if sub == "data" and "--list" not in words:
        return f"{command} --limit 3"
    if sub == "evaluate":
        extra = " --bootstrap 20" + ("" if "-i" in words else " --limit 3")
        return command + extra
    if sub == "train":
        return f"{command} --limit 3"
    if sub == "bench":
        # paper-table's small model is a replay, which takes no options
        tiny = BENCH_TINY[:2] + BENCH_TINY[4:] if "paper-table" in command else BENCH_TINY
        return f"{command} {shlex.join(tiny)}"
    return command


BLOCKS = readme_blocks()
BASH = [cmd for lang, text in BLOCKS if lang == "bash" for cmd in shell_commands(text)]
PYTHON = [text for lang, text in BLOCKS if lang == "python"]
YAML = [text for lang, text in BLOCKS if lang == "yaml"]
RAN: list[str] = []  # what the tests below ran, for the last one


def test_two_commands(shell):
    """make test is this suite; make run is the default bench, run here on 6 segments a pair:
    enough that every trained router is scored, and its metrics are checked."""
    make_run = re.search(r"^run: .*\n\t(.+)$", (REPO / "Makefile").read_text(), flags=re.M)
    assert make_run and make_run.group(1) == "$(BIN)/routelmt bench configs/default.yaml"
    log = ""
    for cmd in BASH:
        if cmd.startswith("make test"):
            RAN.append(cmd)
        elif cmd.startswith("make run"):
            command = f"routelmt bench configs/default.yaml {shlex.join(DEFAULT_BENCH_SMALL)}"
            shell.run(command, timeout=3000)  # 41 min at load 19, minutes on an idle machine
            log = shell.last_stderr
            RAN.append(cmd)
    check_default_bench(shell.cwd / "runs/default", REPO / "configs/default.yaml", log)


def test_cli_tour(shell):
    """Data, evaluation, training, calibration, translation and a bench, in README order."""
    for cmd in BASH:
        words = shlex.split(cmd, comments=True)
        if words[0] in ("make", "curl") or words[:2] == ["routelmt", "serve"]:
            continue
        out = shell.run(tiny(cmd))
        RAN.append(cmd)
        if words[:3] == ["routelmt", "data", "--list"]:
            assert "en-es" in out
    scores = [json.loads(line) for line in (shell.cwd / "runs/eval/scores.jsonl").open()]
    assert {"gain-oracle", "random", "length", "routelmt"} <= scores[0].keys()
    tau = json.loads((shell.cwd / "tau.json").read_text())
    assert tau["column"] == "routelmt" and tau["p"] == 0.3
    out = [json.loads(line) for line in (shell.cwd / "out.jsonl").open()]
    assert len(out) == 1 and out[0]["text"].strip()


def test_service_examples(shell):
    """`serve --config`, the service example with curl and the OpenAI client, a real large
    endpoint in front of another service, and the fallback config block."""
    serves = [c for c in BASH if c.startswith("routelmt serve")]
    for cmd in serves:
        if "--port" not in cmd and "--large" not in cmd:
            free = _free_port()
            shell.start(f"{cmd} --port {free}", free)
            shell.stop()
            RAN.append(cmd)
    port = _free_port()
    (example,) = [c for c in serves if "--port 8000" in c]
    url = shell.start(example.replace("8000", str(port)), port)
    RAN.append(example)
    (curl,) = [c for c in BASH if c.startswith("curl")]
    answer = json.loads(shell.run(curl.replace("8000", str(port))))
    RAN.append(curl)
    assert answer["translation"] == "El Banco Mundial espera difundir ese mensaje."
    assert answer["tier"] == "large" and answer["model"] == "GPT-4" and not answer["fallback"]
    for script in PYTHON:
        printed = subprocess.run(
            [sys.executable, "-c", script.replace("8000", str(port))],
            env=shell.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        assert "'tier':" in printed and "'budget':" in printed
    # "a real large model": the service above is an OpenAI-compatible endpoint; put it at 8001
    (real,) = [c for c in serves if "--large" in c]
    front = _free_port()
    # the test forces the large tier below, which a server allows only when told to; the
    # stand-in endpoint answers only its own model names (an unknown name is a 400, as a real
    # server's would be), so the front asks it for `routelmt` instead of Qwen
    stand_in = real.replace("8001", str(port)).replace("Qwen2.5-72B-Instruct", "routelmt")
    command = f"{stand_in} --port {front} --allow-policy-override"
    front_url = shell.start(command, front)
    RAN.append(real)
    reply = httpx.post(
        f"{front_url}/v1/translate",
        json={"text": "Critics blasted the SEC on Wednesday night.", "policy": "large"},
        timeout=120,
    ).json()
    assert reply["tier"] == "large" and not reply["fallback"], reply
    assert reply["model"] == "routelmt"  # named as configured; answered by `url`
    assert "routelmt_requests_total" in httpx.get(f"{url}/metrics", timeout=10).text

    # the config block: valid, and it builds the chain it describes (no calls made)
    from routelmt.backends.openai import OpenAITranslator
    from routelmt.serve.config import load_config

    (block,) = YAML
    path = shell.cwd / "large.yaml"
    path.write_text(block, encoding="utf-8")
    config = load_config(path)
    chain = OpenAITranslator(config["large"].removeprefix("openai:"), **config["large_options"])
    assert [e.model for e in chain.endpoints] == ["Qwen2.5-72B-Instruct"] * 2 + ["gpt-4o"]
    chain.close()


def test_every_readme_command_was_run():
    missing = [c for c in BASH if c not in RAN]
    assert not missing, f"README commands the tests above did not run: {missing}"
