"""``routelmt translate``: any backend, resumable per segment, torn last lines repaired."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routelmt.cli import main
from routelmt.pipeline import read_partial_translations

SOURCES = ["one cat", "two dogs", "a red house", "the blue tree", "far away"]


def _files(tmp_path: Path) -> tuple[Path, Path]:
    segments = tmp_path / "segments.jsonl"
    segments.write_text(
        "".join(
            json.dumps({"id": f"s{i}", "direction": "en-es", "source": s}) + "\n"
            for i, s in enumerate(SOURCES)
        ),
        encoding="utf-8",
    )
    recorded = tmp_path / "recorded.jsonl"
    recorded.write_text(
        "".join(
            json.dumps({"segment_id": f"s{i}", "system": "Rec", "text": s.upper()}) + "\n"
            for i, s in enumerate(SOURCES)
        ),
        encoding="utf-8",
    )
    return segments, recorded


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_translate_writes_records_and_summary(tmp_path, capsys):
    segments, recorded = _files(tmp_path)
    out = tmp_path / "out.jsonl"
    argv = ["-q", "translate", "-i", str(segments), "--backend", str(recorded)]
    assert main([*argv, "-o", str(out), "--batch-size", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["translated"] == 5 and summary["reused"] == 0 and summary["system"] == "Rec"
    assert summary["segments_per_s"] > 0
    rows = _rows(out)
    assert [r["segment_id"] for r in rows] == [f"s{i}" for i in range(5)]
    assert rows[2] == {"segment_id": "s2", "system": "Rec", "text": "A RED HOUSE"}

    assert main([*argv, "-o", str(out)]) == 0  # a finished output: nothing to do
    summary = json.loads(capsys.readouterr().out)
    assert summary["translated"] == 0 and summary["reused"] == 5
    assert len(_rows(out)) == 5


@pytest.mark.parametrize("torn", ['{"segment_id": "s2", "sys', "\x00\x00\x00\n"])
def test_resume_after_a_torn_last_line(tmp_path, capsys, torn):
    segments, recorded = _files(tmp_path)
    out = tmp_path / "out.jsonl"
    # two finished records (marked OLD, so a redone one would show) and a write cut short
    done = [{"segment_id": f"s{i}", "system": "Rec", "text": f"OLD {i}"} for i in (0, 1)]
    out.write_text("".join(json.dumps(r) + "\n" for r in done) + torn, encoding="utf-8")
    argv = ["-q", "translate", "-i", str(segments), "--backend", str(recorded), "-o", str(out)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["reused"] == 2 and summary["translated"] == 3
    rows = _rows(out)  # every line parses: the torn fragment is gone
    assert [r["segment_id"] for r in rows] == [f"s{i}" for i in range(5)]
    assert rows[0]["text"] == "OLD 0" and rows[4]["text"] == "FAR AWAY"


def test_corruption_before_the_last_line_is_an_error(tmp_path):
    out = tmp_path / "out.jsonl"
    good = json.dumps({"segment_id": "s1", "system": "Rec", "text": "x"})
    out.write_text("not json\n" + good + "\n", encoding="utf-8")
    with pytest.raises(Exception, match=r"out.jsonl:1: unreadable translation record"):
        read_partial_translations(out)
    assert out.read_text(encoding="utf-8").startswith("not json")  # left untouched


def test_text_input_with_direction_and_default_output(tmp_path, capsys):
    _, recorded = _files(tmp_path)
    text = tmp_path / "doc.txt"
    text.write_text("one cat\ntwo dogs\n", encoding="utf-8")
    lines = [
        json.dumps({"segment_id": f"doc/{i}", "system": "Rec", "text": f"T{i}"}) for i in (0, 1)
    ]
    recorded.write_text("\n".join(lines) + "\n", encoding="utf-8")
    argv = ["-q", "translate", "-i", str(text), "--backend", str(recorded)]
    assert main(argv) == 2
    assert "direction" in capsys.readouterr().err
    assert main([*argv, "--direction", "en-es"]) == 0
    out = Path(json.loads(capsys.readouterr().out)["output"])
    assert out.parent == tmp_path and out.name.startswith("doc.")
    assert [r["text"] for r in _rows(out)] == ["T0", "T1"]


def test_output_of_another_system_is_refused(tmp_path, capsys):
    segments, recorded = _files(tmp_path)
    out = tmp_path / "out.jsonl"
    out.write_text(json.dumps({"segment_id": "s0", "system": "Other", "text": "x"}) + "\n")
    argv = ["translate", "-i", str(segments), "--backend", str(recorded), "-o", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "out.jsonl" in err and "'Other', not 'Rec'" in err


def test_replay_of_a_wmt_system(tmp_path, capsys):
    from wmt_layout import make_layout

    root = make_layout(tmp_path / "wmt")
    segments = tmp_path / "wmt.jsonl"
    segments.write_text(
        json.dumps({"id": "wmt24/en-es/1", "direction": "en-es", "source": "The cat sleeps."})
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "big.jsonl"
    argv = ["-q", "translate", "-i", str(segments), "--backend", "replay:Big", "-o", str(out)]
    assert main([*argv, "--wmt-root", str(root), "--pairs", "en-es"]) == 0
    assert _rows(out) == [
        {"segment_id": "wmt24/en-es/1", "system": "Big", "text": "El gato duerme."}
    ]


class _Counted:
    """A backend that reports the tokens it generated, as the transformers backend does."""

    name = "Fake"

    def __init__(self) -> None:
        self.last_stats = None

    def translate(self, segments):
        from types import SimpleNamespace

        self.last_stats = SimpleNamespace(generated_tokens=3 * len(segments))
        return [s.source[::-1] for s in segments]


def test_tokens_per_second_when_the_backend_counts_tokens(tmp_path):
    from routelmt.datasets.plain import load_segments
    from routelmt.pipeline import translate_resumable

    segments_path, _ = _files(tmp_path)
    segments = load_segments(segments_path)
    result = translate_resumable(_Counted(), segments, tmp_path / "o.jsonl", batch_size=2)
    assert result.tokens == 15 and result.tokens_per_second > 0
    assert result.texts == [s[::-1] for s in SOURCES]


class _Streaming:
    """A backend that streams (index, text) as rows finish, out of order, and can crash."""

    name = "Stream"

    def __init__(self, crash_after: int | None = None) -> None:
        self.crash_after = crash_after
        self.last_stats = None
        self.asked: list[list[str]] = []

    def translate(self, segments):  # pragma: no cover - the stream is used instead
        raise AssertionError("translate_resumable should use translate_iter")

    def translate_iter(self, segments):
        from types import SimpleNamespace

        self.asked.append([s.id for s in segments])
        self.last_stats = SimpleNamespace(generated_tokens=0)
        for count, i in enumerate(reversed(range(len(segments)))):  # the last finishes first
            if self.crash_after is not None and count == self.crash_after:
                raise RuntimeError("killed mid-stream")
            self.last_stats.generated_tokens += 2
            yield i, segments[i].source[::-1]


def test_a_streaming_backend_is_stored_as_rows_finish_and_resumes_after_a_crash(tmp_path):
    from routelmt.datasets.plain import load_segments
    from routelmt.pipeline import read_partial_translations, translate_resumable

    segments_path, _ = _files(tmp_path)
    segments = load_segments(segments_path)
    out = tmp_path / "o.jsonl"
    with pytest.raises(RuntimeError, match="killed mid-stream"):
        translate_resumable(_Streaming(crash_after=3), segments, out, batch_size=2)
    kept = [r.segment_id for r in read_partial_translations(out)]
    assert kept == [s.id for s in segments[::-1][:3]]  # every finished row was appended
    again = _Streaming()
    result = translate_resumable(again, segments, out, batch_size=2)
    assert again.asked == [[s.id for s in segments[:2]]]  # only what was missing, in one stream
    assert result.texts == [s[::-1] for s in SOURCES]
    assert result.reused == 3 and result.translated == 2 and result.tokens == 4


SLOW_CLI = """
import os, sys, time
from routelmt.backends.base import BACKENDS, Translator

@BACKENDS.register("slow")
class Slow(Translator):
    def __init__(self, spec, **options):
        self.name = "slow"
    def translate(self, segments):
        time.sleep(float(os.environ.get("SLOW_SLEEP", "0.02")))
        return [s.source.upper() for s in segments]

from routelmt.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_mid_run_then_rerun_finishes_without_redoing(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    text = tmp_path / "many.txt"
    text.write_text("".join(f"line {i}\n" for i in range(400)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    argv = ["-q", "translate", "-i", str(text), "--direction", "en-es", "-o", str(out)]
    argv += ["--backend", "slow:x", "--batch-size", "1"]
    proc = subprocess.Popen([sys.executable, "-c", SLOW_CLI, *argv])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= 20:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, not finished
    before = [json.loads(line) for line in out.read_bytes().split(b"\n")[:-1]]
    assert 20 <= len(before) < 400

    env = {**os.environ, "SLOW_SLEEP": "0"}  # the rest at full speed
    command = [sys.executable, "-c", SLOW_CLI, *argv]
    rerun = subprocess.run(command, capture_output=True, text=True, env=env)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["reused"] == len(before) and summary["translated"] == 400 - len(before)
    rows = _rows(out)
    assert [r["segment_id"] for r in rows] == [f"many/{i}" for i in range(400)]
    assert rows[: len(before)] == before
