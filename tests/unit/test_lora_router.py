"""The LoRA mode of RouteLMT on a tiny random 2-layer model (seconds, no real weights)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

from test_features_tiny import _tiny_model as tiny_model  # noqa: E402

from routelmt.errors import ConfigError, InputError  # noqa: E402
from routelmt.records import ScoredExample, Segment  # noqa: E402
from routelmt.routers.base import get_router  # noqa: E402
from routelmt.routers.lora import (  # noqa: E402
    RouteLMTLoRARouter,
    split_by_group,
    subsample_by_group,
)
from routelmt.routers.provenance import training_overlap  # noqa: E402

WORDS = ["alpha", "beta", "gamma", "delta", "river", "city", "house", "green", "quick", "slow"]


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<bos>": 1, "<eos>": 2, "<unk>": 3}
    for char in sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:.,;!?- \n")):
        vocab[char] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


def _tiny_model(kind: str = "llama", identity: str = "tiny@test"):
    return tiny_model(kind, vocab_size=80, num_layers=2, identity=identity)


def _examples(n: int = 48, seed: int = 0) -> list[ScoredExample]:
    """Gain = 10 x (number of words) + noise: learnable from the prompt, different per source."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(1, 7))
        source = " ".join(rng.choice(WORDS, size=k))
        gain = 10.0 * k + rng.normal(0, 1)
        segment = Segment(id=f"s{i}", direction="en-de", source=source, source_id=f"g{i // 2}")
        out.append(ScoredExample(segment, "S", "L", "x", "y", "chrf", 50.0, 50.0 + gain))
    return out


def _router(lm, **kwargs) -> RouteLMTLoRARouter:
    settings = dict(template="zeroshot", lm=lm, progress=False, seed=0, batch_size=8)
    settings.update(kwargs)
    return RouteLMTLoRARouter(**settings)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matrices: one thread is ~10x faster than two when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def lm(request):
    return _tiny_model(request.param), _tokenizer()


def _base_states(model, tokenizer, texts):
    enc = tokenizer(texts[:3], return_tensors="pt", padding=True)
    with torch.no_grad():
        return [h.clone() for h in model(**enc, output_hidden_states=True).hidden_states]


def test_training_reduces_error_and_leaves_base_model_unchanged(lm):
    model, tokenizer = lm
    examples = _examples()
    texts = [ex.segment.source for ex in examples]
    before = _base_states(model, tokenizer, texts)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    params = {n: p.detach().clone() for n, p in model.named_parameters()}

    router = _router(lm, lr=1e-3, head_lr=1e-2, steps=60, dropout=0.0)
    gains = np.asarray([ex.gain for ex in examples])
    untrained_mse = np.mean((gains.mean() - gains) ** 2)  # a zero head predicts the mean
    router.fit(examples)
    mse = np.mean((router.predict(examples) - gains) ** 2)
    assert mse < 0.5 * untrained_mse
    assert np.mean(router.losses[-10:]) < np.mean(router.losses[:10])
    lora_b = [p for n, p in router._adapted.lora_parameters().items() if "lora_B" in n]
    assert lora_b and all(float(p.abs().sum()) > 0 for p in lora_b)  # the adapter learnt too

    after = _base_states(model, tokenizer, texts)
    for a, b in zip(before, after):
        assert torch.equal(a, b)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    for name, param in model.named_parameters():
        assert torch.equal(param, params[name]), name
    assert not any("lora" in n for n, _ in model.named_modules())


def test_save_load_round_trip_identical_scores(lm, tmp_path):
    examples = _examples(24)
    router = _router(lm, steps=3, layer=1, pooling="mean").fit(examples)
    scores = router.score(examples)
    router.save(tmp_path / "r")
    config = json.loads((tmp_path / "r" / "router.json").read_text())
    assert config["model"] == "tiny@test" and config["layer"] == 1
    assert config["lora"]["rank"] == 8 and config["lora"]["alpha"] == 32
    assert set(config["lora"]["target_modules"]) >= {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert set(config["lora"]["target_modules"]) >= {"gate_proj", "up_proj", "down_proj"}
    loaded = RouteLMTLoRARouter.load(tmp_path / "r", lm=lm, progress=False)
    np.testing.assert_array_equal(loaded.score(examples), scores)
    assert loaded.train_hash == router.train_hash
    assert training_overlap(tmp_path / "r", examples).same_example == len(examples)


def test_load_refuses_other_template_or_model(lm, tmp_path):
    router = _router(lm, steps=1).fit(_examples(16))
    router.save(tmp_path / "r")
    with pytest.raises(ConfigError, match="template_fingerprint"):
        RouteLMTLoRARouter.load(tmp_path / "r", lm=lm, template="fewshot")
    other = (_tiny_model(identity="other@test"), lm[1])
    with pytest.raises(ConfigError, match="model"):
        RouteLMTLoRARouter.load(tmp_path / "r", lm=other)


def test_q_small_target_scores_low_quality_first(lm):
    examples = _examples(16)
    router = _router(lm, steps=2, target="q_small").fit(examples)
    np.testing.assert_allclose(router.score(examples), -router.predict(examples))


def test_bad_settings_and_untrained(lm):
    with pytest.raises(ConfigError, match="layer"):
        _router(lm, layer=0).fit(_examples(8))
    with pytest.raises(ConfigError, match="layer"):
        _router(lm, layer=5).fit(_examples(8))
    with pytest.raises(ConfigError, match="not trained"):
        _router(lm).score(_examples(2))
    with pytest.raises(ConfigError, match="pooling"):
        _router(lm, pooling="max")


def test_registered_and_subsample_keeps_groups():
    assert isinstance(get_router("routelmt-lora", lm=(None, None)), RouteLMTLoRARouter)
    examples = _examples(40)
    picked = subsample_by_group(examples, 11, seed=3)
    assert len(picked) == 11
    assert picked == subsample_by_group(examples, 11, seed=3)
    assert len(subsample_by_group(examples, 100)) == 40


def test_long_prompts_keep_their_end(lm):
    router = _router(lm, max_length=5)
    ids = router._encode([Segment(id="a", direction="en-de", source="alpha beta gamma")])[0]
    full = _router(lm)._encode([Segment(id="a", direction="en-de", source="alpha beta gamma")])[0]
    assert ids == full[-5:]


def test_early_stopping_keeps_the_best_checkpoint_and_stops(lm, tmp_path):
    examples = _examples(64)
    router = _router(
        lm, lr=1e-3, head_lr=1e-2, steps=400, validation=0.25, eval_every=4, patience=2
    ).fit(examples)
    curve = router.learning_curve
    info = router.train_info
    assert curve[0]["step"] == 0 and len(curve) >= 3
    assert [p["step"] for p in curve] == sorted(p["step"] for p in curve)
    assert info["stopped_early"] and len(router.losses) < 400
    assert curve[-1]["step"] == len(router.losses)
    best = min(curve, key=lambda p: p["val_mse"])
    assert info["best_step"] == best["step"] and best["val_mse"] < curve[0]["val_mse"]
    # the kept adapter and head are the best checkpoint's, not the last step's
    train, held = split_by_group(examples, 0.25, 0)
    z = (np.asarray([ex.gain for ex in held]) - router.target_mean) / router.target_std
    kept = np.mean((router._predict_raw(router._encode(held)) - z) ** 2)
    assert kept == pytest.approx(best["val_mse"], rel=1e-4)
    assert info["n_validation"] == len(held) and info["n_train"] == len(train)
    assert not {ex.segment.group for ex in train} & {ex.segment.group for ex in held}
    # the artifact carries the curve as strict JSON (no NaN) and scores the same after loading
    router.save(tmp_path / "r")
    text = (tmp_path / "r" / "router.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["training"]["best_step"] == best["step"]
    loaded = RouteLMTLoRARouter.load(tmp_path / "r", lm=lm, progress=False)
    np.testing.assert_allclose(loaded.score(held), router.score(held))


def test_early_stopping_settings_and_too_few_groups(lm):
    for bad in (dict(validation=1.0), dict(validation=-0.1), dict(patience=0), dict(eval_every=0)):
        with pytest.raises(ConfigError):
            _router(lm, **bad)
    one_group = [ex for ex in _examples(8) if ex.segment.group == "g0"]
    with pytest.raises(InputError, match="both sides"):
        _router(lm, steps=2, validation=0.5).fit(one_group)


def test_device_setting(lm):
    """An explicit CPU device trains the same router as the default; an unknown one is refused
    by name before any step (a GPU run is `--device cuda`, not testable on this machine)."""
    examples = _examples(16)
    default = _router(lm, steps=2).fit(examples).score(examples)
    explicit = _router(lm, steps=2, device="cpu").fit(examples).score(examples)
    np.testing.assert_array_equal(default, explicit)
    with pytest.raises(ConfigError, match="device 'nonsense'"):
        _router(lm, steps=2, device="nonsense").fit(examples)
