"""The screened output head: the screen file keeps the tied Q8_0 rows and adds a Q4_0 copy, the
exact re-check computes llama.cpp's Q8_0 logits, and the choice is the full head's arg-max
where the screen's own arg-max is not."""

from __future__ import annotations

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from gguf.quants import dequantize, quantize  # noqa: E402

from routelmt.errors import ConfigError  # noqa: E402
from routelmt.screened_head import (  # noqa: E402
    OUTPUT_KEY,
    HeadScreen,
    quantize_q8_0,
    screened_file,
)

Q8, Q4 = gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_0
WIDTH, TOKENS = 64, 400


def write_gguf(path, rows, kind=Q8, output=None):
    """A tiny gemma3-named GGUF whose tied head is ``rows`` (stored as ``kind``)."""
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_token_types([1] * len(rows))
    data = quantize(rows, kind) if kind != gguf.GGMLQuantizationType.F32 else rows
    writer.add_tensor("token_embd.weight", data, raw_dtype=kind)
    if output is not None:
        writer.add_tensor(OUTPUT_KEY, output)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def rows():
    """Head rows with a shared direction, so the top logits lie close enough together that a
    Q4_0 screen sometimes ranks them wrongly (15 of the 64 rows below)."""
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.05, WIDTH).astype(np.float32)
    return (base + rng.normal(0, 0.05, (TOKENS, WIDTH))).astype(np.float32)


@pytest.fixture
def screen(tmp_path, monkeypatch, rows):
    monkeypatch.setenv("ROUTELMT_MODELS", str(tmp_path / "models"))
    return screened_file(write_gguf(tmp_path / "tiny.gguf", rows))


def test_activation_rounding_is_ggmls_q8_0():
    x = np.random.default_rng(1).normal(0, 3, (5, WIDTH)).astype(np.float32)
    x[0, :32] = 0.0  # an all-zero block
    q, scale = quantize_q8_0(x)
    expected = dequantize(quantize(x, Q8), Q8).reshape(5, -1, 32)
    np.testing.assert_allclose(q * scale[:, :, None], expected, rtol=0, atol=1e-6)


def test_the_screen_file_keeps_the_tied_rows_and_adds_a_q4_0_copy(screen, rows):
    reader = gguf.GGUFReader(str(screen.path))
    tensors = {t.name: t for t in reader.tensors}
    assert tensors[OUTPUT_KEY].tensor_type == Q4
    assert tensors["token_embd.weight"].tensor_type == Q8
    np.testing.assert_array_equal(np.asarray(tensors["token_embd.weight"].data), quantize(rows, Q8))
    sigma = np.load(screen.sigma_path)
    exact = dequantize(quantize(rows, Q8), Q8)
    error = dequantize(quantize(exact, Q4), Q4) - exact
    np.testing.assert_allclose(sigma, np.sqrt((error**2).mean(axis=1)), rtol=1e-5)


def test_exact_logits_are_the_q8_0_products(screen, rows):
    head = HeadScreen(screen)
    hidden = np.random.default_rng(2).normal(0, 2, (3, WIDTH)).astype(np.float32)
    tokens = np.array([5, 399, 0])
    hq, hd = quantize_q8_0(hidden)
    h = (hq * hd[:, :, None]).reshape(3, WIDTH).astype(np.float64)
    w = dequantize(quantize(rows, Q8), Q8).astype(np.float64)[tokens]
    np.testing.assert_allclose(head.exact_logits(hidden, tokens), (h * w).sum(axis=1), rtol=1e-5)


def test_the_choice_is_the_full_heads_where_the_screens_is_not(screen, rows):
    head = HeadScreen(screen)
    hidden = np.random.default_rng(3).normal(0, 40, (64, WIDTH)).astype(np.float32)
    hq, hd = quantize_q8_0(hidden)
    h = (hq * hd[:, :, None]).reshape(len(hidden), WIDTH)
    exact = dequantize(quantize(rows, Q8), Q8)
    full = h @ exact.T  # what llama.cpp's Q8_0 head gives
    screened = (h @ dequantize(quantize(exact, Q4), Q4).T).astype(np.float32)
    wrong = (screened.argmax(axis=1) != full.argmax(axis=1)).sum()
    assert wrong > 0  # the data make the screen alone pick wrongly
    assert head.choose(screened, hidden) == full.argmax(axis=1).tolist()
    assert head.rows_checked == 64
    assert head.tokens_checked < 64 * TOKENS / 10  # it re-checks a few, not every token


def test_a_warm_load_parses_nothing(screen, monkeypatch, tmp_path):
    def no_parse(*_a, **_k):
        raise AssertionError("parsed a GGUF")

    monkeypatch.setattr(gguf, "GGUFReader", no_parse)
    again = screened_file(tmp_path / "tiny.gguf")
    assert again == screen


@pytest.mark.parametrize("case", ["untied", "f32"])
def test_a_head_it_cannot_recheck_is_refused(tmp_path, monkeypatch, rows, case):
    monkeypatch.setenv("ROUTELMT_MODELS", str(tmp_path / "models"))
    if case == "untied":
        path = write_gguf(tmp_path / "m.gguf", rows, output=rows)
        match = "its own output head"
    else:
        path = write_gguf(tmp_path / "m.gguf", rows, kind=gguf.GGMLQuantizationType.F32)
        match = "re-checks Q8_0 heads"
    with pytest.raises(ConfigError, match=match):
        screened_file(path)
    assert not list((tmp_path / "models").rglob("*.gguf"))


def test_z_must_be_positive(screen):
    with pytest.raises(ConfigError, match="positive"):
        HeadScreen(screen, z=0)
