"""What the two-stage router's QE scorer (``qe-embed``) costs once per process and per text.

    python bench/qe_cost.py [--run runs/in-model] [--small llamacpp-gemma3-270m]

Prints, each measured in this process:

1. building the scorer, the first language check of a Latin-script text (lingua loads its
   language models then, once per process), and a later one;
2. whether that load holds the GIL: the first check runs in a thread while the main thread
   counts how many times it wakes from 1 ms sleeps (a free GIL: thousands in 10 s);
3. with ``--run``: how many of the run's small and large outputs of 120 characters or more get
   different language confidences from lingua's low-accuracy mode (which loads in a fraction of
   the time): the shipped router's inputs would change if it were used.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

LATIN = "El comité aplazó su decisión sobre el nuevo presupuesto hasta la próxima reunión."


def _fresh_detector(low: bool = False):
    """A new detector over the scorer's candidate languages (nothing loaded yet)."""
    from lingua import LanguageDetectorBuilder

    from routelmt.metrics.base import get_metric
    from routelmt.metrics.qe import _lingua_language

    codes = get_metric("qe-embed")._codes
    builder = LanguageDetectorBuilder.from_languages(*[_lingua_language(c) for c in codes])
    return (builder.with_low_accuracy_mode() if low else builder).build()


def load_costs() -> dict:
    """Lingua loads its models once per process, so the first check is timed once: in a
    thread, while the main thread counts its wake-ups from 1 ms sleeps."""
    from routelmt.metrics.base import get_metric

    t0 = time.perf_counter()
    get_metric("qe-embed")
    built = time.perf_counter() - t0
    detector = _fresh_detector()
    worker = threading.Thread(target=detector.compute_language_confidence_values, args=(LATIN,))
    wakes, t0 = 0, time.perf_counter()
    worker.start()
    while worker.is_alive():
        time.sleep(0.001)
        wakes += 1
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    detector.compute_language_confidence_values(LATIN + " Otra vez.")
    later = time.perf_counter() - t0
    return {"build_s": built, "first_check_s": first, "main_thread_wakes": wakes,
            "later_check_s": later}  # fmt: skip


def low_vs_high(run: Path, small: str) -> dict:
    texts = []
    for folder in (small, "GPT-4"):
        path = run / "translate" / folder / "translations.jsonl"
        texts += [json.loads(line)["text"] for line in path.open(encoding="utf-8")]
    high, low = _fresh_detector(), _fresh_detector(low=True)
    long_texts = [t for t in texts if len(t) >= 120]
    differ = 0
    for text in long_texts:
        a = {v.language: v.value for v in high.compute_language_confidence_values(text)}
        b = {v.language: v.value for v in low.compute_language_confidence_values(text)}
        differ += max(abs(a[k] - b.get(k, 0.0)) for k in a) > 1e-9
    return {"outputs": len(texts), "long": len(long_texts), "differ": differ}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a finished routelmt bench run")
    parser.add_argument("--small", default="llamacpp-gemma3-270m", help="translate/ folder")
    args = parser.parse_args()
    print("1-2.", json.dumps({k: round(v, 4) for k, v in load_costs().items()}))
    if args.run is not None:
        print("3.", json.dumps(low_vs_high(args.run, args.small)))


if __name__ == "__main__":
    main()
