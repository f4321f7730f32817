"""Sentence-level chrF, chrF++ and BLEU through sacrebleu, with sacrebleu's own signatures.

Scores equal ``sacrebleu -sl`` on the same text: we call sacrebleu's metric objects rather than
re-implementing them, and build one object per setting (and per BLEU tokeniser), reused for
every sentence, because construction (tokeniser set-up, regex compilation) dominates otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sacrebleu.metrics.bleu import BLEU, BLEUSignature
from sacrebleu.metrics.chrf import CHRF, CHRFSignature

from routelmt.errors import ConfigError, MissingDependencyError
from routelmt.metrics.base import METRICS, Metric, base_language

# BLEU counts word n-grams, so targets written without spaces need a word segmenter; these are
# the tokenisers sacrebleu itself picks for such targets (``sacrebleu -l en-zh``).
BLEU_TOKENIZERS: dict[str, str] = {"zh": "zh", "ja": "ja-mecab", "ko": "ko-mecab"}
DEFAULT_BLEU_TOKENIZER = "13a"
_MECAB_EXTRAS = {"ja-mecab": ("Japanese", "ja"), "ko-mecab": ("Korean", "ko")}


def _one_signature(name: str, sacrebleu_signature: str) -> str:
    return f"{name}|{sacrebleu_signature}"


@METRICS.register
class ChrF(Metric):
    """Character n-gram F-score (sacrebleu default: chrF2, 6 character orders, 0 word orders).

    chrF needs no tokeniser in any language: it strips whitespace and counts character n-grams,
    so scripts written without spaces (Chinese, Japanese) are scored as they are. Only chrF++'s
    word n-grams split on whitespace; for such targets they add little but never break.
    """

    name = "chrf"

    def __init__(
        self,
        char_order: int = CHRF.CHAR_ORDER,
        word_order: int = CHRF.WORD_ORDER,
        beta: int = CHRF.BETA,
        lowercase: bool = False,
        whitespace: bool = False,
        eps_smoothing: bool = False,
    ) -> None:
        self._chrf = CHRF(
            char_order=int(char_order),
            word_order=int(word_order),
            beta=int(beta),
            lowercase=_as_bool(lowercase),
            whitespace=_as_bool(whitespace),
            eps_smoothing=_as_bool(eps_smoothing),
        )

    def _score(
        self,
        hypotheses: Sequence[str],
        references: Sequence[str] | None,
        target_languages: list[str],
        sources: Sequence[str] | None,
    ) -> np.ndarray:
        assert references is not None
        score = self._chrf.sentence_score
        return np.array(
            [score(h, [r]).score for h, r in zip(hypotheses, references, strict=True)],
            dtype=np.float64,
        )

    def signature(self) -> str:
        """Exactly what ``sacrebleu -m chrf`` prints before ``=`` (e.g. ``chrF2|nrefs:1|...``)."""
        c = self._chrf
        score_name = f"chrF{c.beta}" + "+" * c.word_order
        sig = CHRFSignature({**vars(c), "num_refs": 1}).format()
        return _one_signature(score_name, sig)


@METRICS.register
class SentenceBLEU(Metric):
    """Sentence BLEU with effective-order ``exp`` smoothing, as ``sacrebleu -sl`` computes it.

    The tokeniser follows each hypothesis's target language (``zh`` for Chinese, MeCab for
    Japanese and Korean, ``13a`` otherwise) unless ``tokenize`` forces one for all.
    """

    name = "bleu"

    def __init__(
        self,
        tokenize: str | None = None,
        lowercase: bool = False,
        smooth_method: str = "exp",
        smooth_value: float | None = None,
        max_ngram_order: int = 4,
    ) -> None:
        if tokenize is not None and tokenize not in BLEU.TOKENIZERS:
            raise ConfigError(
                f"unknown BLEU tokenizer '{tokenize}'; known: {', '.join(BLEU.TOKENIZERS)}"
            )
        if smooth_method not in BLEU.SMOOTH_DEFAULTS:
            raise ConfigError(
                f"unknown BLEU smooth_method '{smooth_method}'; "
                f"known: {', '.join(BLEU.SMOOTH_DEFAULTS)}"
            )
        self.tokenize = tokenize
        self._settings = {
            "lowercase": _as_bool(lowercase),
            "smooth_method": smooth_method,
            "smooth_value": None if smooth_value is None else float(smooth_value),
            "max_ngram_order": int(max_ngram_order),
            "effective_order": True,
        }
        self._by_tokenizer: dict[str, BLEU] = {}
        # Languages scored so far per tokeniser, so the signature says what was used.
        self._languages: dict[str, set[str]] = {}

    def tokenizer_for(self, language: str) -> str:
        """The sacrebleu tokeniser name used for a target language code."""
        if self.tokenize is not None:
            return self.tokenize
        return BLEU_TOKENIZERS.get(base_language(language), DEFAULT_BLEU_TOKENIZER)

    def _bleu(self, tokenizer: str) -> BLEU:
        bleu = self._by_tokenizer.get(tokenizer)
        if bleu is None:
            try:
                bleu = BLEU(tokenize=tokenizer, **self._settings)
            except (RuntimeError, ImportError) as exc:
                if tokenizer in _MECAB_EXTRAS:
                    lang, extra = _MECAB_EXTRAS[tokenizer]
                    raise MissingDependencyError(
                        f"BLEU for {lang} targets tokenises with MeCab ('{tokenizer}'), "
                        f'which is not installed: pip install "sacrebleu[{extra}]" '
                        "(or score with chrF, which needs no tokeniser)"
                    ) from exc
                raise MissingDependencyError(
                    f"sacrebleu could not set up the BLEU tokenizer '{tokenizer}': {exc}"
                ) from exc
            self._by_tokenizer[tokenizer] = bleu
        return bleu

    def _score(
        self,
        hypotheses: Sequence[str],
        references: Sequence[str] | None,
        languages: list[str],
        sources: Sequence[str] | None,
    ) -> np.ndarray:
        assert references is not None
        tokenizers = [self.tokenizer_for(lang) for lang in languages]
        # Set every tokeniser up before scoring, so a missing extra fails fast.
        scorers = {tok: self._bleu(tok).sentence_score for tok in set(tokenizers)}
        out = np.empty(len(hypotheses), dtype=np.float64)
        for i, (h, r, tok) in enumerate(zip(hypotheses, references, tokenizers, strict=True)):
            out[i] = scorers[tok](h, [r]).score
        for lang, tok in zip(languages, tokenizers, strict=True):
            self._languages.setdefault(tok, set()).add(lang)
        return out

    def signature(self) -> str:
        """What ``sacrebleu -sl -m bleu`` prints before ``=``; with several tokenisers in use,
        ``tok:`` lists each with its languages, e.g. ``tok:13a(de,es)+zh(zh)``.

        Before anything is scored it shows the default tokeniser (the one a forced ``tokenize``
        or a non-CJK target gets).
        """
        used = sorted(self._languages) or [self.tokenize or DEFAULT_BLEU_TOKENIZER]
        if len(used) == 1:
            tok = self._tokenizer_signature(used[0])
        else:
            tok = "+".join(
                f"{self._tokenizer_signature(t)}({','.join(sorted(self._languages[t]))})"
                for t in used
            )
        args = {**self._settings, "num_refs": 1, "tokenizer_signature": tok}
        return _one_signature("BLEU", BLEUSignature(args).format())

    def _tokenizer_signature(self, tokenizer: str) -> str:
        bleu = self._by_tokenizer.get(tokenizer)
        # Built tokenisers report their own signature (e.g. MeCab adds its version).
        return bleu.tokenizer_signature if bleu is not None else tokenizer


def _as_bool(value: object) -> bool:
    """Accept booleans and the strings a ``--metric-arg key=value`` flag produces."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(f"expected true or false, got '{value}'")
    return bool(value)


@METRICS.register
class ChrFPlusPlus(ChrF):
    """chrF++: chrF plus word uni- and bigrams (Popović 2017)."""

    name = "chrf++"

    def __init__(
        self,
        char_order: int = CHRF.CHAR_ORDER,
        word_order: int = 2,
        beta: int = CHRF.BETA,
        lowercase: bool = False,
        whitespace: bool = False,
        eps_smoothing: bool = False,
    ) -> None:
        super().__init__(char_order, word_order, beta, lowercase, whitespace, eps_smoothing)


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (sacrebleu defaults) of ``hypotheses`` against one reference each."""
    return float(CHRF().corpus_score(list(hypotheses), [list(references)]).score)


def corpus_chrf_difference_interval(
    a: Sequence[str],
    b: Sequence[str],
    references: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of corpus chrF(b) - chrF(a) over segment resamples (the same draws
    for both systems). Corpus chrF is a function of summed per-segment n-gram statistics, so a
    resample sums the drawn segments' statistics, as sacrebleu's own paired bootstrap does."""
    from routelmt.evaluation.bootstrap import percentile_interval

    chrf = CHRF()
    refs = [list(references)]
    stats_a = np.array(chrf._extract_corpus_statistics(list(a), refs))
    stats_b = np.array(chrf._extract_corpus_statistics(list(b), refs))
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot)
    for i in range(n_boot):
        pick = rng.integers(0, len(a), len(a))
        score_a = chrf._compute_score_from_stats(stats_a[pick].sum(0).tolist()).score
        score_b = chrf._compute_score_from_stats(stats_b[pick].sum(0).tolist()).score
        diffs[i] = score_b - score_a
    return percentile_interval(diffs, level)
