"""RouteLMT probe vs LoRA on WMT24 (Phi-3-Medium -> GPT-4, chrF gains, all six pairs pooled).

    python bench/probe_vs_lora.py [--n-train 400] [--test-fold-count 10] [--layer -1]
                                  [--epochs 1] [--timing-n 64] [--threads 2] [--seed 0]

One fixed split by source group: fold 0 of ``--test-fold-count`` grouped folds is the test set
(about 600 segments for 10 folds); ``--n-train`` training examples are drawn by whole source
groups from the other folds. Both routers train on exactly those examples and score exactly the
test set. Printed: Spearman with the gain, HitRate@0.3, MeanDelta@0.3, training seconds, the
router's scoring seconds per segment (probe: prefill up to its layer + head, a prefill that
translation with S reuses; LoRA: the adapted prefill up to its layer) and, for LoRA, the extra
base-weight prefill that translation then needs (full depth, KV cache kept, last-position
logits: what decoding starts from). Timings are measured back to back on the same
``--timing-n`` test segments; the machine may be shared, so compare within one run only.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from routelmt.backends.hf import cached_causal_lm
from routelmt.evaluation.ranking import hit_rate, mean_delta, spearman
from routelmt.features import compute_features
from routelmt.labels import wmt_labels
from routelmt.lm import pad_left
from routelmt.prompts import encode_prompts
from routelmt.routers.inmodel import FeatureSource, RouteLMTRouter
from routelmt.routers.lora import RouteLMTLoRARouter, subsample_by_group
from routelmt.splits import fold_ids

P = 0.3


class LayerSource(FeatureSource):
    """The probe's FeatureSource, computing only the layers asked for (early exit, no entropy):
    with a fixed layer this is the probe's whole prefill, at a fraction of the full depth."""

    def __init__(self, layers: list[int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.wanted = layers

    def ensure(self, items, *, progress: bool = True) -> None:
        missing = [ex.segment for ex in items if ex.segment.id not in self._rows]
        if not missing:
            return
        model, tokenizer, _info, template = self._load()
        feats = compute_features(
            model, tokenizer, template, missing, layers=self.wanted, progress=progress
        )
        offset = len(self._rows)
        for i, segment in enumerate(missing):
            self._rows[segment.id] = offset + i
        for layer, values in feats.layers.items():
            self._layers.setdefault(layer, []).append(values)


def base_prefill_seconds(model, tokenizer, template, segments, batch_size: int = 8) -> float:
    """Seconds for the base-weight prefill translation starts from (KV cache, last logits)."""
    encoded = encode_prompts(template, [ex.segment for ex in segments], tokenizer)
    order = sorted(range(len(segments)), key=lambda i: -len(encoded[i]))
    start = time.perf_counter()
    for offset in range(0, len(order), batch_size):
        rows = order[offset : offset + batch_size]
        input_ids, mask = pad_left([encoded[i] for i in rows], tokenizer.pad_token_id)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=position_ids,
                use_cache=True,
                logits_to_keep=1,
            )
    return time.perf_counter() - start


def quality(scores: np.ndarray, gains: np.ndarray) -> dict[str, float]:
    return {
        "spearman": spearman(scores, gains),
        "hit": hit_rate(scores, gains, P),
        "delta": mean_delta(scores, gains, P),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-train", type=int, default=160)
    parser.add_argument("--test-fold-count", type=int, default=40)
    parser.add_argument("--layer", type=int, default=-1, help="layer of both routers (-1 = last)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=160)
    parser.add_argument("--timing-n", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="1 is fastest on a shared box")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    examples = wmt_labels(pairs="all", small="Phi-3-Medium", large="GPT-4")
    folds = fold_ids([ex.segment.group for ex in examples], args.test_fold_count, args.seed)
    test = [ex for ex, f in zip(examples, folds) if f == 0]
    pool = [ex for ex, f in zip(examples, folds) if f != 0]
    train = subsample_by_group(pool, args.n_train, args.seed)
    assert not {ex.segment.group for ex in train} & {ex.segment.group for ex in test}
    gains = np.asarray([ex.gain for ex in test])
    print(
        f"labels {len(examples)}  train pool {len(pool)}  n_train {len(train)} "
        f"({len({ex.segment.group for ex in train})} source groups)  test {len(test)} "
        f"({len({ex.segment.group for ex in test})} groups)",
        flush=True,
    )
    model, tokenizer, info = cached_causal_lm("gemma3-270m")
    torch.set_num_threads(args.threads)  # after loading: the loader sets every core
    layer = args.layer % (info.num_layers + 1)
    timing = test[: args.timing_n]
    rows: dict[str, dict[str, float]] = {}
    print(f"layer {layer} of {info.num_layers}, threads {torch.get_num_threads()}", flush=True)

    # --- probe: frozen model, ridge head (layer and alpha by grouped CV inside train) ---------
    source = LayerSource([layer], model="gemma3-270m")
    started = time.perf_counter()
    source.ensure(train + test)
    feature_s = time.perf_counter() - started
    started = time.perf_counter()
    probe = RouteLMTRouter(layer=layer, source=source, seed=args.seed).fit(train)
    probe_fit_s = time.perf_counter() - started
    probe_scores = probe.score(test)
    template = source.template
    started = time.perf_counter()
    feats = compute_features(
        model,
        tokenizer,
        template,
        timing,
        layers=[probe.layer],
        batch_size=8,
        progress=False,
        cache=False,
    )
    probe.score_features(feats.layers[probe.layer])
    probe_score_s = (time.perf_counter() - started) / len(timing)
    print(f"probe quality {quality(probe_scores, gains)}", flush=True)
    rows[f"probe (layer {probe.layer})"] = {
        **quality(probe_scores, gains),
        "train_s": probe_fit_s,
        "train_s_note": feature_s,
        "score_ms": 1000 * probe_score_s,
        "extra_ms": 0.0,
    }
    print(
        f"probe: layer {probe.layer}, alpha {probe.head.alpha_:g}; prefill features for "
        f"{len(train) + len(test)} segments {feature_s:.0f}s (cached on disk when repeated), "
        f"head fit {probe_fit_s:.1f}s",
        flush=True,
    )

    # --- LoRA: adapter + head trained jointly ---------------------------------------------------
    lora = RouteLMTLoRARouter(
        layer=layer,
        epochs=args.epochs,
        steps=args.steps,
        max_length=args.max_length,
        seed=args.seed,
    )
    started = time.perf_counter()
    lora.fit(train)
    lora_fit_s = time.perf_counter() - started
    print(f"lora: {lora.train_info}", flush=True)
    lora_scores = lora.score(test)
    print(f"lora quality {quality(lora_scores, gains)}", flush=True)
    started = time.perf_counter()
    lora.score(timing)
    lora_score_s = (time.perf_counter() - started) / len(timing)
    base_s = base_prefill_seconds(model, tokenizer, template, timing) / len(timing)
    rows[f"lora (layer {lora.layer}, r8 a32)"] = {
        **quality(lora_scores, gains),
        "train_s": lora_fit_s,
        "train_s_note": 0.0,
        "score_ms": 1000 * lora_score_s,
        "extra_ms": 1000 * base_s,
    }
    rows["gain oracle"] = {**quality(gains, gains)}
    rows["random"] = {**quality(np.random.default_rng(args.seed).random(len(gains)), gains)}

    print()
    print(
        f"{'router':<26} {'Spearman':>8} {'Hit@0.3':>8} {'MeanD@0.3':>9} {'train s':>8} "
        f"{'route ms/seg':>12} {'extra prefill ms/seg':>20}"
    )
    for name, row in rows.items():
        train_s = f"{row['train_s']:.0f}" if "train_s" in row else "-"
        score = f"{row['score_ms']:.0f}" if "score_ms" in row else "-"
        extra = f"{row['extra_ms']:.0f}" if "extra_ms" in row else "-"
        print(
            f"{name:<26} {row['spearman']:>8.3f} {row['hit']:>8.1f} {row['delta']:>9.2f} "
            f"{train_s:>8} {score:>12} {extra:>20}"
        )
    print(
        f"\nprobe train s = head fit only (its prefill features, {feature_s:.0f}s for train+test, "
        "are the same prefill translation runs anyway). LoRA routing prefill runs on adapted "
        "weights, so a request kept on the small model needs the extra base-weight prefill "
        f"(full depth, KV cache) measured on {len(timing)} test segments."
    )


if __name__ == "__main__":
    main()
