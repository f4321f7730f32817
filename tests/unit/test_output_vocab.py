"""The cut output vocabulary: a GGUF's tokens, rows and special ids remapped consistently, the
prefill rows as llama.cpp would look them up, and the settings that choose the languages."""

from __future__ import annotations

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from routelmt.errors import ConfigError  # noqa: E402
from routelmt.languages import target_language  # noqa: E402
from routelmt.output_vocab import (  # noqa: E402
    CutVocabulary,
    FullEmbeddings,
    _writes_no_word,
    cut_vocabulary,
    output_token_ids,
    parse_languages,
    write_cut_gguf,
)

TOKENS = ["<pad>", "<eos>", "<unused0>", "▁la", "¿", "▁casa", "<0x0A>", "▁Haus"]
TYPES = [3, 3, 3, 1, 1, 1, 6, 1]
WIDTH = 4


@pytest.fixture
def tiny_gguf(tmp_path):
    """A four-wide, eight-token GGUF with the fields the cut rewrites (made here, no model)."""
    path = tmp_path / "tiny.gguf"
    writer = gguf.GGUFWriter(str(path), "gemma3")
    writer.add_tokenizer_model("llama")
    writer.add_token_list(TOKENS)
    writer.add_token_scores([float(-i) for i in range(len(TOKENS))])
    writer.add_token_types(TYPES)
    writer.add_eos_token_id(1)
    writer.add_pad_token_id(0)
    embeddings = np.arange(len(TOKENS) * WIDTH, dtype=np.float32).reshape(len(TOKENS), WIDTH)
    writer.add_tensor("token_embd.weight", embeddings)
    writer.add_tensor("output_norm.weight", np.ones(WIDTH, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path, embeddings


def read(path):
    reader = gguf.GGUFReader(str(path))
    tensors = {t.name: np.asarray(t.data) for t in reader.tensors}
    return reader.fields, tensors


def test_the_cut_file_keeps_rows_tokens_and_remaps_special_ids(tiny_gguf, tmp_path):
    source, embeddings = tiny_gguf
    keep = np.array([0, 1, 5, 6])
    dest = tmp_path / "cut.gguf"
    write_cut_gguf(source, keep, dest)
    fields, tensors = read(dest)
    assert fields["tokenizer.ggml.tokens"].contents() == ["<pad>", "<eos>", "▁casa", "<0x0A>"]
    assert fields["tokenizer.ggml.token_type"].contents() == [3, 3, 1, 6]
    assert fields["tokenizer.ggml.scores"].contents() == [0.0, -1.0, -5.0, -6.0]
    assert fields["tokenizer.ggml.eos_token_id"].contents() == 1
    assert fields["general.architecture"].contents() == "gemma3"
    np.testing.assert_array_equal(tensors["token_embd.weight"], embeddings[keep])
    np.testing.assert_array_equal(tensors["output_norm.weight"], np.ones(WIDTH))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_special_id_the_cut_loses_is_an_error_and_leaves_no_file(tiny_gguf, tmp_path):
    source, _ = tiny_gguf
    keep = np.array([3, 5])  # neither <pad> nor <eos>: the file would name tokens it lacks
    with pytest.raises(ConfigError, match="lost tokenizer.ggml.eos_token_id"):
        write_cut_gguf(source, keep, tmp_path / "cut.gguf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.gguf"]


def test_prefill_rows_are_the_full_rows_times_gemmas_input_scale(tiny_gguf):
    source, embeddings = tiny_gguf
    rows = FullEmbeddings(source).rows([7, 2, 7])
    expected = embeddings[[7, 2, 7]] * np.float32(np.sqrt(WIDTH))
    np.testing.assert_array_equal(rows, expected)
    assert rows.dtype == np.float32


class CharTokenizer:
    """Each word a token of its own: enough to see which words' tokens are kept."""

    def __init__(self, pieces):
        self.index = {p.replace("▁", " "): i for i, p in enumerate(pieces)}

    def __call__(self, texts, add_special_tokens=False):
        ids = [[self.index[t]] if t in self.index else [] for t in texts]
        return {"input_ids": ids}


def test_kept_ids_are_the_words_specials_bytes_and_punctuation(monkeypatch):
    import routelmt.output_vocab as ov

    words = {"es": ["la", "casa"], "en": ["the"]}
    monkeypatch.setattr(ov, "language_words", lambda language, n: words[language][:n])
    keep = output_token_ids(CharTokenizer(TOKENS), TOKENS, TYPES, ["es"], words=1)
    # <pad>, <eos> (control), ▁la (the first word), ¿ (punctuation), <0x0A> (byte); not the
    # <unused0> slot, not casa (beyond words=1), not Haus (German)
    assert keep.tolist() == [0, 1, 3, 4, 6]
    with pytest.raises(ConfigError, match="empty"):
        output_token_ids(CharTokenizer(TOKENS), TOKENS, TYPES, [])


def test_a_language_without_a_word_list_is_named():
    pytest.importorskip("wordfreq")
    from routelmt.output_vocab import language_words

    assert "casa" in language_words("es", 2000)
    with pytest.raises(ConfigError, match="no word list for target language 'xx'"):
        language_words("xx", 10)


def test_settings_and_directions():
    assert parse_languages("es, de,es") == ("de", "es")
    assert parse_languages(["ZH"]) == ("zh",)
    assert parse_languages(None) == () and parse_languages("") == ()
    with pytest.raises(ConfigError, match="no language"):
        parse_languages(" , ")
    assert target_language("en-es") == "es" and target_language("cs-uk") == "uk"
    assert _writes_no_word("¿") and _writes_no_word("，") and _writes_no_word("▁12")
    assert not _writes_no_word("▁la") and not _writes_no_word("")
    cut = CutVocabulary(path=None, keep=np.array([0, 2, 5]), source=None, languages=("es",))
    np.testing.assert_array_equal(cut.to_cut, [0, -1, 1, -1, -1, 2])
    cut.check_direction("en-es")
    with pytest.raises(ConfigError, match="direction en-ja: .* cut to es"):
        cut.check_direction("en-ja")


def test_a_warm_load_reads_the_kept_ids_instead_of_tokenising_again(tiny_gguf, monkeypatch):
    pytest.importorskip("wordfreq")  # its version is part of the cache key
    import routelmt.output_vocab as ov

    monkeypatch.setenv("ROUTELMT_MODELS", str(tiny_gguf[0].parent / "models"))
    monkeypatch.setattr(ov, "language_words", lambda language, n: ["la", "casa"][:n])
    calls = []

    class Counting(CharTokenizer):
        def __call__(self, texts, add_special_tokens=False):
            calls.append(len(texts))
            return super().__call__(texts, add_special_tokens)

    source = tiny_gguf[0]
    first = cut_vocabulary(source, Counting(TOKENS), ["es"], words=2, english_words=0)
    again = cut_vocabulary(source, Counting(TOKENS), ["es"], words=2, english_words=0)
    assert len(calls) == 1  # the second call read the ids beside the cut file
    assert again.path == first.path and again.keep.tolist() == first.keep.tolist() == [
        0,
        1,
        3,
        4,
        5,
        6,
    ]
    other = cut_vocabulary(source, Counting(TOKENS), ["es"], words=1, english_words=0)
    assert len(calls) == 2 and other.path != first.path and 5 not in other.keep.tolist()
