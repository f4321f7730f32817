"""What the small model itself says about its own translation, for the decode-then-route ablation.

    T=runs/in-model-3pairs/translate/hf-gemma3-270m/translations.jsonl
    python bench/ablation_output_pass.py --small $T -o runs/ablation/output-pass.npz

One teacher-forced pass per segment over the prompt and the small model's own translation (the
few-shot prefix is prefilled once per direction and shared): the log-probability the model gave
each token it wrote (mean, minimum, and that of the stop that ended the line), and the mean state
of every layer over the written tokens. A greedy decode computes the same log-probabilities as it
goes (they are free at serving time); this pass recomputes them for translations already on disk.
Writes one .npz atomically, aligned with ``runs/ablation/prefill.npz``'s ids.
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
from routelmt.evaluation.ablation_inputs import read_translations
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

log = logging.getLogger("ablation_output_pass")


def _written_tokens(tokenizer, template, prompt_ids, segment, text) -> list[int]:
    """Token ids of ``text`` as the continuation of its prompt, plus the stop that ends it.

    The prompt and the continuation are encoded together (as the model saw them when writing)
    and split where the prompt's ids end; a boundary that tokenizes differently falls back to
    encoding the continuation alone."""
    stop = template.stop_strings(segment.direction)[0]
    rendered = template.render(segment.source, segment.direction, tokenizer)
    whole = tokenizer(rendered + " " + text + stop, add_special_tokens=template.add_special_tokens)[
        "input_ids"
    ]
    if whole[: len(prompt_ids)] == prompt_ids:
        return list(whole[len(prompt_ids) :])
    return list(tokenizer(" " + text + stop, add_special_tokens=False)["input_ids"])


def _pass(model, prefix, tails, written, n_layers, pad_id):
    """Mean state of every layer over the written tokens, and their log-probabilities."""
    import torch

    inputs, tmask = tail_inputs(prefix, tails, pad_id)
    wmask = torch.zeros(tmask.shape, dtype=torch.bool)
    for r, (tail, n_written) in enumerate(zip(tails, written, strict=True)):
        wmask[r, len(tail) - n_written : len(tail)] = True
    keep = wmask.unsqueeze(-1)
    counts = wmask.sum(1, keepdim=True).clamp(min=1)

    def pool(hidden, _layer):
        # the state *reading* each written token: positions of the written tokens themselves
        total = torch.where(keep, hidden.float(), torch.zeros(())).sum(1)
        return (total / counts).clone()

    # no next-token entropy at the prompt's end: the written tokens' own log-probs replace it
    states, final, _ = every_layer_states(model, prefix, inputs, tmask, n_layers, pool)
    stats = np.zeros((len(tails), 4), dtype=np.float32)  # mean, min, stop, mean entropy
    with torch.inference_mode():
        for r, (tail, n_written) in enumerate(zip(tails, written, strict=True)):
            start = len(tail) - n_written  # first written position; predicted from start - 1
            lp = next_token_logprobs(model, final[r, start - 1 : len(tail) - 1, :])
            target = torch.tensor(tail[start:])
            chosen = lp[torch.arange(n_written), target]
            entropy = -(lp.exp() * lp).sum(-1)
            body = chosen[:-1] if n_written > 1 else chosen  # the text, without its stop
            stats[r] = [
                float(body.mean()),
                float(body.min()),
                float(chosen[-1]),
                float(entropy.mean()),
            ]
    return states, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", required=True, help="comma-separated translations.jsonl files")
    parser.add_argument("--prefill", type=Path, default=Path("runs/ablation/prefill.npz"))
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--limit", type=int, default=None, help="first N segments (a check)")
    parser.add_argument("-o", "--output", type=Path, default=Path("runs/ablation/output-pass.npz"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    with np.load(args.prefill) as data:
        ids = [str(x) for x in data["ids"]][: args.limit]
    if args.output.exists():
        with np.load(args.output) as data:
            if [str(x) for x in data["ids"]] == ids:
                log.info("%s already holds these %d segments", args.output, len(ids))
                return
    texts = read_translations([Path(p) for p in args.small.split(",")])
    dataset = WMTDataset()
    pairs = dict.fromkeys(i.split("/")[1] for i in ids)
    by_id = {s.id: s for pair in pairs for s in dataset.segments(pair)}
    segments = [by_id[i] for i in ids]
    model, tokenizer, info = cached_causal_lm(args.model)
    template = resolve_template(None, tokenizer)
    n_layers = num_layers_of(model)
    hidden = int(model.config.get_text_config().hidden_size)
    prompts = encode_prompts(template, segments, tokenizer)
    written = [
        _written_tokens(tokenizer, template, p, s, texts[s.id])
        for p, s in zip(prompts, segments, strict=True)
    ]
    pad_id = tokenizer.pad_token_id or 0
    n = len(segments)
    states = np.zeros((n, n_layers + 1, hidden), dtype=np.float32)
    stats = np.zeros((n, 4), dtype=np.float32)
    started = time.perf_counter()
    progress = bar(desc="output pass", total=n, unit="seg")
    for direction in sorted({s.direction for s in segments}):
        rows = [i for i, s in enumerate(segments) if s.direction == direction]
        plen = common_prefix_length([prompts[i] for i in rows])
        prefix = SharedPrefix(model, prompts[rows[0]][:plen], list(range(n_layers + 1)))
        rows.sort(key=lambda i: -(len(prompts[i]) + len(written[i])))
        for start in range(0, len(rows), args.batch_size):
            batch = rows[start : start + args.batch_size]
            tails = [prompts[i][plen:] + written[i] for i in batch]
            st, sx = _pass(model, prefix, tails, [len(written[i]) for i in batch], n_layers, pad_id)
            states[batch], stats[batch] = st, sx
            progress.update(len(batch))
    progress.close()
    seconds = time.perf_counter() - started
    meta = {"model": info.identity, "template": template.name, "seconds": round(seconds, 1)}
    with atomic_open(args.output, "wb") as handle:
        np.savez(
            handle,
            ids=np.asarray(ids),
            states=states,
            mean_logprob=stats[:, 0],
            min_logprob=stats[:, 1],
            stop_logprob=stats[:, 2],
            mean_entropy=stats[:, 3],
            written_tokens=np.asarray([len(w) - 1 for w in written], dtype=np.int32),
            meta=np.asarray(json.dumps(meta)),
        )
    log.info("wrote %s: %d segments in %.0fs", args.output, n, seconds)


if __name__ == "__main__":
    main()
