"""docs/own-data.md's five commands, as printed, on a non-WMT file: recipe sentences in two
directions, no references, the embedded small model live, and a real OpenAI-compatible large
endpoint on the loopback (``loopback_llm``: it stands in for a hosted large model, which cannot
run here, and counts every call). Bad input at each step is exit 2 with nothing written.

The commands are read from the doc's code block; the only changes are the endpoint's URL
(``$LARGE``) and a free port for ``serve``.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

# about a minute on an idle two-core machine; far longer when its cores are shared
pytestmark = [pytest.mark.integration, pytest.mark.timeout(3600)]
pytest.importorskip("torch")
pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

from loopback_llm import LoopbackLLM  # noqa: E402

import routelmt  # noqa: E402
from routelmt.budget.allocation import budget_count  # noqa: E402
from routelmt.cli import main  # noqa: E402

DOC = Path(__file__).resolve().parents[2] / "docs" / "own-data.md"
RECIPES = [
    "Preheat the oven to 180 degrees.",
    "Whisk the eggs with the sugar until pale and fluffy.",
    "Fold in the flour gently with a spatula.",
    "Bake for twenty-five minutes, until golden.",
    "Let the cake cool completely before slicing it.",
    "Chop the onions finely.",
    "Fry the garlic in olive oil over a low heat.",
    "Add a pinch of salt and a little sugar.",
    "Simmer the tomato sauce for ten minutes, stirring often.",
    "Serve the pasta with fresh basil and grated parmesan.",
    "Melt the butter in a small pan.",
    "Season to taste with black pepper.",
]


def doc_commands() -> list[str]:
    (block,) = [b for b in re.findall(r"```bash\n(.*?)```", DOC.read_text("utf-8"), re.S)]
    return [line for line in block.splitlines() if line.strip()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_recipes(folder: Path) -> int:
    rows = [
        {"id": f"{direction}/{i}", "direction": direction, "source": text}
        for direction in ("en-de", "en-es")
        for i, text in enumerate(RECIPES[:8])
    ]
    (folder / "recipes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return len(rows)


def _bad(argv: list[str], capsys: pytest.CaptureFixture[str], command: str) -> None:
    assert main(argv) == 2, argv
    assert capsys.readouterr().err.startswith(f"routelmt {command}: error:")


def _check_bad_input(folder: Path, capsys: pytest.CaptureFixture[str], large: str) -> None:
    """One mistake per step: each exits 2 before writing anything."""
    (folder / "empty.jsonl").write_text("", "utf-8")
    small = ["--small", "hf:gemma3-270m", "--large", large]
    _bad(["data", "-i", "empty.jsonl", *small, "-o", "bad/labels.jsonl"], capsys, "data")
    _bad(
        ["train", "-i", "missing.jsonl", "--router", "routelmt-2stage", "-o", "bad/r"],
        capsys,
        "train",
    )
    for budget in ("0", "1.5"):
        argv = ["translate", "-i", "recipes.jsonl", *small, "--router", "length"]
        _bad([*argv, "--budget", budget, "-o", "bad/out.jsonl"], capsys, "translate")
    down = f"openai:http://127.0.0.1:{_free_port()}/v1#big"
    argv = ["translate", "-i", "recipes.jsonl", "--small", "hf:gemma3-270m", "--large", down]
    _bad(
        [*argv, "--router", "length", "--budget", "0.3", "-o", "bad/out.jsonl"], capsys, "translate"
    )
    assert not (folder / "bad").exists()


def _serve(command: str, folder: Path) -> None:
    port = _free_port()
    words = shlex.split(command.replace("--port 8000", f"--port {port}"))
    env = {"PYTHONPATH": str(Path(routelmt.__file__).parents[1])}
    log = folder / "serve.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "routelmt.cli", *words[1:]],
            cwd=folder,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**__import__("os").environ, **env},
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        body = {"text": RECIPES[2], "source_lang": "en", "target_lang": "de"}
        answer = httpx.post(f"{url}/v1/translate", json=body, timeout=900).json()
        assert answer["translation"] and answer["tier"] in ("small", "large"), answer
    finally:
        proc.terminate()
        proc.wait(30)


def test_five_commands_on_recipes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    n = _write_recipes(tmp_path)
    commands = doc_commands()
    assert commands[0].startswith("LARGE=") and len(commands) == 6
    with LoopbackLLM() as llm:
        _check_bad_input(tmp_path, capsys, llm.spec)
        steps = [shlex.split(c.replace("$LARGE", llm.spec)) for c in commands[1:]]
        data, train, dry, run, serve = steps
        assert main(["-q", *data[1:]]) == 0  # 1. label a sample
        labels = [json.loads(x) for x in Path("labels.jsonl").read_text("utf-8").splitlines()]
        assert len(labels) == 8 and sum(llm.answered.values()) == 8
        assert labels[0]["metric"].startswith("pseudo-reference")  # no references: the large output
        assert main(["-q", *train[1:]]) == 0  # 2. adapt the router
        assert Path("routers/recipes/router.json").is_file()
        capsys.readouterr()
        assert main(["-q", *dry[1:]]) == 0  # 3. dry run: the plan, no large call
        plan = json.loads(capsys.readouterr().out)
        k = budget_count(n, 0.3)
        assert plan["large_calls"] == k and sum(llm.received.values()) == 8
        assert main(["-q", *run[1:]]) == 0  # 4. the whole file
        out = [json.loads(x) for x in Path("recipes.out.jsonl").read_text("utf-8").splitlines()]
        assert len(out) == n and sum(r["tier"] == "large" for r in out) == k
        assert sum(llm.answered.values()) == 8 + k
        assert all("stage1_score" in r for r in out)  # the two-stage router scored both stages
        _serve(" ".join(shlex.quote(w) for w in serve), tmp_path)  # 5. serve
