"""The llamacpp backend's registration and its errors, with or without llama-cpp-python."""

from __future__ import annotations

import importlib.util

import pytest

from routelmt.backends import resolve
from routelmt.backends.llamacpp import LlamaCppTranslator
from routelmt.backends.resolve import make_translator
from routelmt.errors import InputError, MissingDependencyError
from routelmt.models import gguf_path
from routelmt.records import Segment

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None


def test_registered_and_lazy(monkeypatch):
    monkeypatch.setattr(resolve, "llama_cpp_available", lambda: True)
    tr = make_translator("llamacpp:gemma3-270m", threads=1, batch_size=4)
    assert tr.name == "llamacpp:gemma3-270m"
    assert tr._generator is None  # nothing loads before the first call


@pytest.mark.skipif(HAVE_LLAMA, reason="llama-cpp-python is installed here")
def test_missing_llama_cpp_names_the_extra():
    tr = LlamaCppTranslator("gemma3-270m")
    with pytest.raises(MissingDependencyError, match=r"routelmt\[llamacpp\]"):
        tr.translate([Segment(id="a", direction="en-es", source="Hello.")])


def test_spec_falls_back_to_hf_with_the_reason_logged(monkeypatch, caplog):
    assert resolve.llama_cpp_available() == HAVE_LLAMA
    monkeypatch.setattr(resolve, "llama_cpp_available", lambda: False)
    with caplog.at_level("WARNING", logger="routelmt.backends.resolve"):
        tr = make_translator("llamacpp:gemma3-270m", threads=1, max_rows=8, batch_size=4)
    assert tr.kind == "hf" and tr.name == "hf:gemma3-270m"
    assert tr._generator is None
    assert "llama-cpp-python is not installed" in caplog.text
    assert "max_rows, threads" in caplog.text  # the options hf has no use for are named


def test_bad_model_spec_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="gguf"):
        gguf_path(str(tmp_path / "missing.gguf"))
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"NOPE" + b"\0" * 64)
    with pytest.raises(InputError, match="not a GGUF file"):
        gguf_path(str(fake))


def test_bad_threads_is_a_clear_error():
    from routelmt.errors import ConfigError

    with pytest.raises(ConfigError, match="threads"):
        make_translator("llamacpp:gemma3-270m", threads=0)


def test_a_cut_head_names_itself_and_what_it_cannot_write(monkeypatch):
    monkeypatch.setattr(resolve, "llama_cpp_available", lambda: True)
    tr = make_translator("llamacpp:gemma3-270m", output_languages="zh,es")
    assert tr.name == "llamacpp:gemma3-270m+out-es-zh" and tr._generator is None
    assert tr.writes("en-es") is None and tr.writes("de-zh") is None
    assert "cut to es, zh" in tr.writes("en-de")
    assert make_translator("llamacpp:gemma3-270m").writes("en-de") is None
    fewer = make_translator("llamacpp:gemma3-270m", output_languages="es", output_english_words=0)
    assert fewer.name == "llamacpp:gemma3-270m+out-es-en0"
    with pytest.raises(Exception, match="output_english_words must be >= 0"):
        make_translator("llamacpp:gemma3-270m", output_languages="es", output_english_words=-1)


def test_a_screened_head_names_itself_and_is_not_combined_with_a_cut(monkeypatch):
    from routelmt.errors import ConfigError

    monkeypatch.setattr(resolve, "llama_cpp_available", lambda: True)
    tr = make_translator("llamacpp:gemma3-270m", head_screen=True)
    assert tr.name == "llamacpp:gemma3-270m+screen" and tr._generator is None
    assert tr.writes("en-de") is None  # every token is still scored
    with pytest.raises(ConfigError, match="head_screen and output_languages"):
        make_translator("llamacpp:gemma3-270m", head_screen=True, output_languages="es")


def test_a_copy_guard_names_itself_and_checks_its_run_length(monkeypatch):
    from routelmt.errors import ConfigError

    monkeypatch.setattr(resolve, "llama_cpp_available", lambda: True)
    assert make_translator("llamacpp:gemma3-270m", copy_guard=4).name == (
        "llamacpp:gemma3-270m+guard4"
    )
    for bad in ({"copy_guard": 1}, {"copy_guard": 4, "output_languages": "es"}):
        with pytest.raises(ConfigError, match="copy_guard must be 0"):
            make_translator("llamacpp:gemma3-270m", **bad)
