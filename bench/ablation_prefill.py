"""Every signal one prefill of the small model gives for free, for the router ablation.

    python bench/ablation_prefill.py --pairs en-es,en-de,en-zh -o runs/ablation/prefill.npz

One pass per direction (the few-shot prefix is prefilled once and shared): for every segment,
the last-token and mean-pooled state of every layer, the next-token entropy at the end of the
prompt, token counts, and the small model's mean log-probability of its own prompt tail (the
request-specific part: the source line and the target-language cue), which needs the LM head
on the tail positions only. Writes one .npz (atomically); rerunning with the same output skips
the work when the file already holds the same segments.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from routelmt.backends.hf import cached_causal_lm
from routelmt.datasets.wmt import WMTDataset
from routelmt.features import (
    SharedPrefix,
    every_layer_states,
    next_token_logprobs,
    tail_inputs,
)
from routelmt.lm import common_prefix_length, num_layers_of
from routelmt.progress import bar
from routelmt.prompts import encode_prompts, resolve_template
from routelmt.storage import atomic_open

log = logging.getLogger("ablation_prefill")


def _tail_pass(model, prefix, tails, n_layers, pad_id, loglik):
    """States of every layer (last and mean) plus the tail's token log-probabilities."""
    import torch

    inputs, tmask = tail_inputs(prefix, tails, pad_id)
    lengths = tmask.sum(1)
    rows = torch.arange(len(tails))
    keep = tmask.bool().unsqueeze(-1)

    def pool(hidden, layer):
        last = hidden[rows, lengths - 1, :].float()
        total = torch.where(keep, hidden.float(), torch.zeros(())).sum(1)
        mean = (total + prefix.sums[layer]) / (lengths + prefix.length).unsqueeze(-1)
        return torch.cat([last, mean], -1).clone()

    states, final, ent = every_layer_states(
        model, prefix, inputs, tmask, n_layers, pool, entropy=True
    )
    logprob = np.zeros(len(tails), dtype=np.float32)
    with torch.inference_mode():
        for r, tail in enumerate(tails if loglik else ()):
            n = len(tail)
            if n < 2:
                continue
            lp = next_token_logprobs(model, final[r, : n - 1, :])
            target = torch.tensor(tail[1:])
            logprob[r] = float(lp[torch.arange(n - 1), target].mean())
    return states, ent.numpy(), logprob


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default="en-es,en-de,en-zh")
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--loglik", action="store_true", help="also the tail's mean log-prob (LM head on the tail)"
    )
    parser.add_argument("--limit", type=int, default=None, help="segments per pair (tests)")
    parser.add_argument("-o", "--output", type=Path, default=Path("runs/ablation/prefill.npz"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    dataset = WMTDataset()
    segments = [s for pair in args.pairs.split(",") for s in dataset.segments(pair)[: args.limit]]
    ids = [s.id for s in segments]
    if args.output.exists():
        with np.load(args.output) as data:
            if [str(x) for x in data["ids"]] == ids:
                log.info("%s already holds these %d segments", args.output, len(ids))
                return
    model, tokenizer, info = cached_causal_lm(args.model)
    template = resolve_template(None, tokenizer)
    n_layers = num_layers_of(model)
    hidden = int(model.config.get_text_config().hidden_size)
    encoded = encode_prompts(template, segments, tokenizer)
    pad_id = tokenizer.pad_token_id or 0
    n = len(segments)
    states = np.zeros((n, n_layers + 1, 2 * hidden), dtype=np.float32)
    entropy = np.zeros(n, dtype=np.float32)
    tail_logprob = np.zeros(n, dtype=np.float32)
    tail_tokens = np.zeros(n, dtype=np.int32)
    source_tokens = np.array(
        [len(tokenizer(s.source, add_special_tokens=False)["input_ids"]) for s in segments],
        dtype=np.int32,
    )
    started = time.perf_counter()
    progress = bar(desc="prefill signals", total=n, unit="seg")
    for direction in sorted({s.direction for s in segments}):
        rows = [i for i, s in enumerate(segments) if s.direction == direction]
        plen = common_prefix_length([encoded[i] for i in rows])
        prefix = SharedPrefix(model, encoded[rows[0]][:plen], list(range(n_layers + 1)))
        rows.sort(key=lambda i: -len(encoded[i]))
        for start in range(0, len(rows), args.batch_size):
            batch = rows[start : start + args.batch_size]
            tails = [encoded[i][plen:] for i in batch]
            st, ent, lp = _tail_pass(model, prefix, tails, n_layers, pad_id, args.loglik)
            states[batch], entropy[batch], tail_logprob[batch] = st, ent, lp
            tail_tokens[batch] = [len(t) for t in tails]
            progress.update(len(batch))
    progress.close()
    seconds = time.perf_counter() - started
    meta = {
        "model": info.identity,
        "template": template.name,
        "template_fingerprint": template.fingerprint(),
        "layers": n_layers + 1,
        "hidden": hidden,
        "seconds": round(seconds, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.output, "wb") as handle:
        np.savez(
            handle,
            ids=np.asarray(ids),
            directions=np.asarray([s.direction for s in segments]),
            groups=np.asarray([s.group for s in segments]),
            last=states[:, :, :hidden],
            mean=states[:, :, hidden:],
            entropy=entropy,
            **({"tail_logprob": tail_logprob} if args.loglik else {}),
            tail_tokens=tail_tokens,
            prompt_tokens=np.asarray([len(e) for e in encoded], dtype=np.int32),
            source_tokens=source_tokens,
            source_chars=np.asarray([len(s.source) for s in segments], dtype=np.int32),
            meta=np.asarray(json.dumps(meta)),
        )
    log.info("wrote %s: %d segments in %.0fs", args.output, n, seconds)


if __name__ == "__main__":
    main()
