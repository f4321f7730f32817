"""Prefill features on tiny randomly initialised models (seconds, no real weights)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from routelmt.errors import ConfigError  # noqa: E402
from routelmt.features import (  # noqa: E402
    compute_features,
    extract_features,
    load_features,
    parse_layers,
    prefill_batch,
    resolve_layers,
)
from routelmt.prompts import ChatTemplate, FewShotTemplate  # noqa: E402
from routelmt.records import Segment  # noqa: E402

SOURCES = [
    "Hello.",
    "The committee will meet again next week to discuss the proposal in detail.",
    "Short one",
    "A somewhat longer sentence, with punctuation; and more words than the others here!",
    "Zürich — naïve café.",
]


def _byte_tokenizer():
    """A byte-level tokenizer (256 byte tokens + specials) that encodes any text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2}
    for char in sorted(alphabet):
        vocab[char] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
    fast.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    return fast


def _tiny_model(
    kind: str,
    *,
    vocab_size: int = 260,
    num_layers: int = 3,
    identity: str | None = None,
    sliding_window: int = 16,
):
    """A seeded, randomly initialised Llama or Gemma3 decoder small enough for unit tests."""
    torch.manual_seed(0)
    common = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    if kind == "llama":
        config = transformers.LlamaConfig(**common)
    else:
        config = transformers.Gemma3TextConfig(
            **common, head_dim=8, sliding_window=sliding_window, query_pre_attn_scalar=8
        )
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    model.routelmt_identity = identity or f"tiny-{kind}@test"
    return model


@pytest.fixture(scope="module")
def tokenizer():
    return _byte_tokenizer()


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def model(request):
    return _tiny_model(request.param)


@pytest.fixture
def segments():
    return [Segment(id=f"s{i}", direction="en-es", source=s) for i, s in enumerate(SOURCES)]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTELMT_CACHE", str(tmp_path / "cache"))


def _full_forward_states(model, tokenizer, template, segment):
    ids = tokenizer(
        template.render(segment.source, segment.direction, tokenizer),
        add_special_tokens=template.add_special_tokens,
        return_tensors="pt",
    )
    with torch.no_grad():
        out = model(**ids, output_hidden_states=True)
    return [h[0] for h in out.hidden_states], out.logits[0, -1]


def test_batch_equals_one_by_one_and_full_forward(model, tokenizer, segments):
    template = FewShotTemplate(shots=1)
    kwargs = dict(layers="all", progress=False, cache=False)
    batched = extract_features(model, tokenizer, template, segments, batch_size=3, **kwargs)
    n_layers = model.config.num_hidden_layers
    assert sorted(batched) == list(range(n_layers + 1))
    for i, segment in enumerate(segments):
        single = extract_features(model, tokenizer, template, [segment], batch_size=1, **kwargs)
        states, _ = _full_forward_states(model, tokenizer, template, segment)
        for layer in batched:
            assert batched[layer].shape == (len(segments), model.config.hidden_size)
            assert batched[layer].dtype == np.float32
            np.testing.assert_allclose(batched[layer][i], single[layer][0], atol=1e-4, rtol=1e-4)
            np.testing.assert_allclose(
                batched[layer][i], states[layer][-1].numpy(), atol=1e-4, rtol=1e-4
            )


def test_mean_pooling_matches_full_forward(model, tokenizer, segments):
    template = FewShotTemplate(shots=0)
    feats = extract_features(
        model, tokenizer, template, segments, layers=[1, -1], pooling="mean",
        batch_size=4, progress=False, cache=False,
    )  # fmt: skip
    last = model.config.num_hidden_layers
    assert sorted(feats) == [1, last]
    for i, segment in enumerate(segments):
        states, _ = _full_forward_states(model, tokenizer, template, segment)
        for layer in (1, last):
            expected = states[layer].mean(0).numpy()
            np.testing.assert_allclose(feats[layer][i], expected, atol=1e-4, rtol=1e-4)


def test_early_exit_skips_deeper_layers_and_leaves_model_intact(model, tokenizer, segments):
    def hook_counts():
        return [(len(b._forward_hooks), len(b._forward_pre_hooks)) for b in model.model.layers]

    before = hook_counts()
    calls: list[int] = []
    hooks = [
        block.register_forward_hook(lambda *_a, i=i: calls.append(i))
        for i, block in enumerate(model.model.layers)
    ]
    try:
        ids = tokenizer(["abc", "abcdef"], padding=True, return_tensors="pt")
        pooled, ent = prefill_batch(model, ids["input_ids"], ids["attention_mask"], [1])
        assert ent is None and sorted(pooled) == [1]
        assert calls == [0]  # only the first block ran
        calls.clear()
        prefill_batch(model, ids["input_ids"], ids["attention_mask"], [0])
        assert calls == []
    finally:
        for hook in hooks:
            hook.remove()
    # No hook of ours is left behind: a normal forward still runs every block.
    assert hook_counts() == before
    with torch.no_grad():
        out = model(**tokenizer(["abc"], return_tensors="pt"), output_hidden_states=True)
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1


def test_entropy_matches_lm_head(model, tokenizer, segments):
    template = ChatTemplate()
    feats = compute_features(
        model, tokenizer, template, segments, layers=[2], entropy=True, batch_size=2,
        progress=False, cache=False,
    )  # fmt: skip
    assert feats.entropy is not None and feats.entropy.shape == (len(segments),)
    for i, segment in enumerate(segments):
        _, logits = _full_forward_states(model, tokenizer, template, segment)
        p = torch.softmax(logits.float(), -1)
        expected = float(-(p * torch.log(p)).sum())
        assert feats.entropy[i] == pytest.approx(expected, abs=1e-4)
    assert np.all(feats.entropy > 0)


def test_cache_hit_and_key(model, tokenizer, segments, tmp_path):
    template = FewShotTemplate()
    first = compute_features(model, tokenizer, template, segments, layers=[-1], progress=False)
    assert not first.from_cache
    files = list((tmp_path / "cache" / "features").glob("*.npz"))
    assert len(files) == 1
    second = compute_features(model, tokenizer, template, segments, layers=[-1], progress=False)
    assert second.from_cache
    np.testing.assert_array_equal(first.layers[3], second.layers[3])
    assert second.meta["template_fingerprint"] == template.fingerprint()
    # Another template, pooling, or data is another entry.
    compute_features(model, tokenizer, FewShotTemplate(shots=1), segments, layers=[-1],
                     progress=False)  # fmt: skip
    compute_features(model, tokenizer, template, segments[:2], layers=[-1], progress=False)
    compute_features(
        model, tokenizer, template, segments, layers=[-1], pooling="mean", progress=False
    )
    assert len(list((tmp_path / "cache" / "features").glob("*.npz"))) == 4


def test_layer_out_of_range_is_config_error(model, tokenizer, segments):
    n = model.config.num_hidden_layers
    with pytest.raises(ConfigError, match=rf"0\.\.{n}"):
        extract_features(model, tokenizer, FewShotTemplate(), segments, layers=[n + 1],
                         progress=False)  # fmt: skip
    with pytest.raises(ConfigError, match="out of range"):
        resolve_layers([-(n + 2)], n)
    assert resolve_layers([-1, 0, -1], n) == [0, n]
    assert resolve_layers("all", n) == list(range(n + 1))


def test_no_segments_gives_empty_matrices(model, tokenizer):
    feats = compute_features(model, tokenizer, FewShotTemplate(), [], layers=[0, 1], entropy=True)
    assert feats.layers[1].shape == (0, model.config.hidden_size)
    assert feats.entropy is not None and feats.entropy.shape == (0,)


def test_parse_layers():
    assert parse_layers("all") == "all"
    assert parse_layers("-1") == [-1]
    assert parse_layers("0,6,12") == [0, 6, 12]
    assert parse_layers("4:7") == [4, 5, 6]
    with pytest.raises(ConfigError, match="--layers"):
        parse_layers("last")


def test_bad_pooling_and_features_roundtrip(model, tokenizer, segments, tmp_path):
    with pytest.raises(ConfigError, match="pooling"):
        extract_features(model, tokenizer, FewShotTemplate(), segments, pooling="max",
                         progress=False)  # fmt: skip
    from routelmt.features import save_features

    feats = compute_features(
        model, tokenizer, FewShotTemplate(), segments, layers=[0, 2], progress=False, cache=False
    )
    feats.extra["gain"] = np.arange(len(segments), dtype=np.float32)
    save_features(tmp_path / "f.npz", feats)
    loaded = load_features(tmp_path / "f.npz")
    assert loaded.segment_ids == [s.id for s in segments]
    assert sorted(loaded.layers) == [0, 2]
    np.testing.assert_array_equal(loaded.extra["gain"], feats.extra["gain"])
    assert loaded.meta["layers"] == [0, 2]


def test_featurize_command_on_a_model_folder(tokenizer, tmp_path, capsys):
    import argparse
    import json

    from routelmt.commands import featurize
    from routelmt.records import write_records

    folder = tmp_path / "tiny-model"
    _tiny_model("llama").save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    rows = [
        {"id": f"x{i}", "direction": "en-de", "source": s, "small_system": "S",
         "large_system": "L", "small_text": "a", "large_text": "b", "metric": "chrf",
         "q_small": 10.0 * i, "q_large": 50.0}
        for i, s in enumerate(SOURCES)
    ]  # fmt: skip
    write_records(tmp_path / "in.jsonl", rows)
    parser = argparse.ArgumentParser()
    featurize.add_parser(parser.add_subparsers())
    argv = ["featurize", "-i", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "f.npz"),
            "--model", str(folder), "--layers", "0,-1", "--batch-size", "2",
            "--entropy"]  # fmt: skip
    assert featurize.run(parser.parse_args(argv)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["layers"] == [0, 3] and summary["template"] == "chat"
    loaded = load_features(tmp_path / "f.npz")
    assert loaded.segment_ids == [r["id"] for r in rows]
    assert loaded.layers[3].shape == (len(rows), 32)
    assert loaded.entropy is not None and loaded.entropy.shape == (len(rows),)
    np.testing.assert_allclose(loaded.extra["gain"], [50.0 - 10.0 * i for i in range(len(rows))])
    assert loaded.meta["model"].startswith("tiny-model@")
    # The same run again is a cache hit.
    assert featurize.run(parser.parse_args(argv)) == 0
    assert json.loads(capsys.readouterr().out)["from_cache"] is True
    with pytest.raises(ConfigError, match="layer 9 is out of range"):
        featurize.run(parser.parse_args([*argv[:-5], "--layers", "9"]))


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_shared_prefix_gives_the_same_features(tokenizer, segments, pooling):
    """The template prefix is prefilled once per direction; features and entropy are unchanged."""
    from routelmt.features import _prefix_groups, encode_prompts

    model = _tiny_model("llama")  # no sliding window: the prefix path is taken
    template = FewShotTemplate(shots=2)
    mixed = segments + [
        Segment(id=f"d{i}", direction="en-de", source=s) for i, s in enumerate(SOURCES[:3])
    ]
    encoded = encode_prompts(template, mixed, tokenizer)
    groups = _prefix_groups(model, mixed, encoded, True)
    assert len(groups) == 2 and all(prefix_len > 20 for _, prefix_len in groups)
    kwargs = dict(layers="all", pooling=pooling, entropy=True, batch_size=3, progress=False)
    shared = compute_features(model, tokenizer, template, mixed, cache=False, **kwargs)
    plain = compute_features(
        model, tokenizer, template, mixed, cache=False, shared_prefix=False, **kwargs
    )
    for layer in plain.layers:
        np.testing.assert_allclose(shared.layers[layer], plain.layers[layer], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(shared.entropy, plain.entropy, atol=1e-4, rtol=1e-4)
    # A prompt longer than a sliding window falls back to whole-prompt prefill.
    windowed = _tiny_model("gemma3")
    assert all(prefix_len == 0 for _, prefix_len in _prefix_groups(windowed, mixed, encoded, True))
