"""Model spec resolution errors: nothing slow, nothing downloaded."""

from __future__ import annotations

import pytest

from routelmt.errors import InputError
from routelmt.models import folder_fingerprint, resolve_model, sampled_file_hash, validate_gguf


def test_missing_path_names_it(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(InputError, match="no-such-model.*model not found"):
        resolve_model(str(missing))
    with pytest.raises(InputError, match="gemma3-270m"):  # lists the aliases
        resolve_model("./nope.gguf")


def test_hub_id_not_cached_is_clear(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        InputError, match="nor a model in the local Hugging Face cache.*nothing is downloaded"
    ):
        resolve_model("someone/some-model-xyz")


def test_folder_without_config_and_wrong_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="config.json is missing"):
        resolve_model(str(tmp_path / "empty"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(InputError, match=".gguf file"):
        resolve_model(str(tmp_path / "weights.bin"))


def test_not_a_gguf(tmp_path):
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"NOPE" + b"\0" * 100)
    with pytest.raises(InputError, match="fake.gguf.*not a GGUF file"):
        resolve_model(str(fake))
    fake.write_bytes(b"GGUF" + b"\1" * 20)
    with pytest.raises(InputError, match="fake.gguf.*corrupt or truncated"):
        validate_gguf(fake)


def test_fingerprints_change_with_content(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"a" * 5000)
    first = folder_fingerprint(folder)
    assert first == folder_fingerprint(folder)
    (folder / "model.safetensors").write_bytes(b"a" * 4999 + b"b")
    assert folder_fingerprint(folder) != first
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (3 << 20))
    before = sampled_file_hash(big)
    with open(big, "r+b") as handle:
        handle.seek((3 << 20) - 1)
        handle.write(b"\1")
    assert sampled_file_hash(big) != before
