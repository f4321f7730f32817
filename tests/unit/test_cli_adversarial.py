"""Every CLI mistake found by probing exits with status 2 and one line naming what was wrong,
never a traceback (each of these raised one before)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import _data_args, _layout

from routelmt.budget import BudgetSpec
from routelmt.cli import main
from routelmt.serve.shared_pacer import SQLitePacer


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(bytes(range(256)) * 8)
    folder = tmp_path / "folder"
    folder.mkdir()
    plain = tmp_path / "plain"  # a file: a path below it cannot be written
    plain.write_text("x")
    segs = tmp_path / "segs.jsonl"
    segs.write_text(json.dumps({"id": "s1", "direction": "en-es", "source": "hi"}) + "\n")
    scores = tmp_path / "scores.jsonl"
    scores.write_text(json.dumps({"id": "s1", "score": 1.0}) + "\n")
    replay = tmp_path / "replay.jsonl"
    replay.write_text(json.dumps({"segment_id": "s1", "system": "r", "text": "hola"}) + "\n")
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(os.urandom(4096))
    return {
        "binary": binary,
        "folder": folder,
        "plain": plain,
        "segs": segs,
        "scores": scores,
        "replay": replay,
        "garbage": garbage,
        "tmp": tmp_path,
    }


def _fails_cleanly(argv: list[str], capsys, expect: str) -> None:
    try:
        code = main(["-q", *argv])
    except SystemExit as exc:  # argparse: usage, then one error line
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"routelmt {argv[0]}: error:"), err
    assert expect in last, last


def _serve(files: dict[str, Path], *extra: str) -> list[str]:
    replay = str(files["replay"])
    return ["serve", "--small", replay, "--large", replay, "--router", "random", *extra]


CASES = {
    # binary input
    "evaluate-binary": (lambda f: ["evaluate", "-i", f["binary"], "-o", f["tmp"] / "o"], "UTF-8"),
    "translate-binary": (
        lambda f: ["translate", "-i", f["binary"], "--backend", f["replay"], "-o", f["tmp"] / "t"],
        "UTF-8",
    ),
    "calibrate-binary": (
        lambda f: ["calibrate", "-i", f["binary"], "--budget", "0.3", "-o", f["tmp"] / "t.json"],
        "UTF-8",
    ),
    # an output path that is a directory, or cannot be written
    "calibrate-output-dir": (
        lambda f: ["calibrate", "-i", f["scores"], "--budget", "0.3", "-o", f["folder"]],
        "is a directory",
    ),
    "calibrate-output-unwritable": (
        lambda f: ["calibrate", "-i", f["scores"], "--budget", "0.3", "-o", f["plain"] / "t"],
        "not a directory",
    ),
    "translate-output-dir": (
        lambda f: ["translate", "-i", f["segs"], "--backend", f["replay"], "-o", f["folder"]],
        "is a directory",
    ),
    "translate-output-unwritable": (
        lambda f: ["translate", "-i", f["segs"], "--backend", f["replay"], "-o", f["plain"] / "t"],
        "not a directory",
    ),
    # an input path that is a directory
    "evaluate-input-dir": (
        lambda f: ["evaluate", "-i", f["folder"], "-o", f["tmp"] / "o"],
        "is a directory",
    ),
    "translate-input-dir": (
        lambda f: ["translate", "-i", f["folder"], "--backend", f["replay"], "-o", f["tmp"] / "t"],
        "is a directory",
    ),
    "calibrate-input-dir": (
        lambda f: ["calibrate", "-i", f["folder"], "--budget", "0.3", "-o", f["tmp"] / "t.json"],
        "is a directory",
    ),
    # options nobody takes
    "translate-unknown-backend-arg": (
        lambda f: [
            "translate",
            "-i",
            f["segs"],
            "--backend",
            f["replay"],
            "--backend-arg",
            "nosuch=1",
            "-o",
            f["tmp"] / "t",
        ],
        "nosuch",
    ),
    # serve
    "serve-port": (lambda f: [*_serve(f), "--port", "99999"], "between 0 and 65535"),
    "serve-large-timeout-0": (lambda f: [*_serve(f), "--large-timeout", "0"], "positive"),
    "serve-store-unwritable": (
        lambda f: [*_serve(f), "--budget-store", f["plain"] / "b.sqlite"],
        "not a directory",
    ),
    "serve-store-garbage": (
        lambda f: [*_serve(f), "--budget-store", f["garbage"]],
        "not a database",
    ),
    "serve-log-unwritable": (
        lambda f: [*_serve(f), "--log", f["plain"] / "log.jsonl"],
        "not a directory",
    ),
    "serve-log-dir": (lambda f: [*_serve(f), "--log", f["folder"]], "is a directory"),
    "serve-api-key-file-missing": (
        lambda f: [*_serve(f), "--api-key-file", f["tmp"] / "nokeys"],
        "API key file",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_cli_mistakes_exit_2_with_one_line(files, capsys, case):
    make, expect = CASES[case]
    _fails_cleanly([str(a) for a in make(files)], capsys, expect)


def test_unknown_router_arg(tmp_path, capsys):
    corpus = _layout(tmp_path / "wmt")
    argv = ["evaluate", *_data_args(corpus), "--bootstrap", "0", "--routers", "random"]
    argv += ["--router-arg", "random.nosuch=1", "-o", str(tmp_path / "o")]
    _fails_cleanly(argv, capsys, "has no option 'nosuch'")


def test_a_tampered_store_is_refused_at_startup(files, capsys):
    store = files["tmp"] / "budget.sqlite"
    SQLitePacer(BudgetSpec(share=0.3), store).close()
    with sqlite3.connect(store) as db:
        db.execute("""UPDATE pacer SET state = '{"tau": "x"}' WHERE id = 1""")
    _fails_cleanly([*_serve(files), "--budget-store", str(store)], capsys, "pacer state")


def _without_root_powers(argv: list[str]) -> list[str]:
    """``routelmt -q ARGV`` as a command line that cannot write where its user may not. Root
    (how CI runs) may write anywhere: there it runs under ``setpriv`` with the capabilities
    that bypass file permissions dropped, so it is refused like any other user."""
    command = [sys.executable, "-m", "routelmt.cli", "-q", *map(str, argv)]
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    drop = "--bounding-set=-dac_override,-dac_read_search,-fowner"
    if setpriv is None or subprocess.run([setpriv, drop, "true"], check=False).returncode:
        pytest.skip("running as root, and setpriv (util-linux) cannot drop root's override")
    return [setpriv, drop, *command]


def test_permission_denied_outputs(files):
    locked = files["tmp"] / "locked"
    locked.mkdir(mode=0o555)
    calibrate = ["calibrate", "-i", str(files["scores"]), "--budget", "0.3"]
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    for argv in (
        [*calibrate, "-o", str(locked / "t.json")],
        [*_serve(files), "--log", str(locked / "l.jsonl")],
    ):
        done = subprocess.run(
            _without_root_powers(argv), capture_output=True, text=True, env=env, timeout=300
        )
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith(f"routelmt {argv[0]}: error:") and "ermission" in last, last
    assert list(locked.iterdir()) == []  # nothing was written there
