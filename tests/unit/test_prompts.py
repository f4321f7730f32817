"""Prompt templates: direction-aware text, chat templates, fingerprints, registry."""

from __future__ import annotations

import pytest

from routelmt.errors import ConfigError
from routelmt.prompts import (
    EXAMPLES,
    TEMPLATES,
    ChatTemplate,
    FewShotTemplate,
    default_template,
    encode_prompts,
    get_template,
    resolve_template,
)
from routelmt.records import Segment


class FakeTokenizer:
    """Records what it was asked; a chat template that shows roles."""

    def __init__(self, chat_template: str | None = "yes") -> None:
        self.chat_template = chat_template
        self.calls: list[dict] = []

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        body = "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages)
        return body + "<assistant>"

    def __call__(self, texts, add_special_tokens=True, split_special_tokens=False):
        self.calls.append({"texts": list(texts), "add_special_tokens": add_special_tokens})
        offset = [1] if add_special_tokens else []
        return {"input_ids": [offset + [ord(c) for c in t] for t in texts]}


def test_fewshot_ends_with_source_and_target_label():
    text = FewShotTemplate().render("  Good morning!  ", "en-es")
    assert text.endswith("English: Good morning!\nSpanish:")
    assert text.startswith("Translate the following sentences from English to Spanish.")
    for en, es in zip(EXAMPLES["en"], EXAMPLES["es"]):
        assert f"English: {en}\nSpanish: {es}\n\n" in text


def test_fewshot_is_direction_aware():
    de_hi = FewShotTemplate().render("Guten Tag", "de-hi")
    assert de_hi.endswith("German: Guten Tag\nHindi:")
    assert f"German: {EXAMPLES['de'][0]}\nHindi: {EXAMPLES['hi'][0]}" in de_hi
    into_english = FewShotTemplate(shots=2).render("Hola", "es-en")
    assert f"Spanish: {EXAMPLES['es'][1]}\nEnglish: {EXAMPLES['en'][1]}" in into_english
    assert EXAMPLES["en"][2] not in into_english  # only two shots


def test_fewshot_without_examples_is_zero_shot():
    text = FewShotTemplate().render("Hello", "en-sw")
    assert (
        text
        == "Translate the following sentences from English to Swahili.\n\nEnglish: Hello\nSwahili:"
    )
    assert get_template("zeroshot").render("Hello", "en-es").count("Spanish:") == 1


def test_bad_direction_is_config_error():
    with pytest.raises(ConfigError, match="direction"):
        FewShotTemplate().render("x", "english-spanish-x")
    with pytest.raises(ConfigError, match="unknown language code"):
        FewShotTemplate().render("x", "en-qq")


def test_fingerprint_tracks_every_piece_of_text():
    base = FewShotTemplate().fingerprint()
    assert base == FewShotTemplate().fingerprint()
    assert base != FewShotTemplate(shots=2).fingerprint()
    assert base != FewShotTemplate(header="Translate:\n").fingerprint()
    changed = dict(EXAMPLES)
    changed["es"] = ("a", "b", "c")
    assert base != FewShotTemplate(examples=changed).fingerprint()
    assert ChatTemplate().fingerprint() != ChatTemplate(system="Be brief.").fingerprint()
    assert base != get_template("zeroshot").fingerprint()


def test_chat_template_uses_tokenizer():
    tok = FakeTokenizer()
    text = ChatTemplate().render("Hello there", "en-de", tok)
    assert text.startswith("<user>Translate the following text from English to German.")
    assert text.endswith("Hello there</user><assistant>")
    with_system = ChatTemplate(system="You translate.").render("Hi", "en-de", tok)
    assert with_system.startswith("<system>You translate.</system><user>")
    with pytest.raises(ConfigError, match="fewshot"):
        ChatTemplate().render("Hello", "en-de", FakeTokenizer(chat_template=None))


def test_encode_respects_special_tokens():
    segs = [Segment(id="1", direction="en-es", source="Hi")]
    tok = FakeTokenizer()
    few = encode_prompts(FewShotTemplate(), segs, tok)
    assert few[0][0] == 1 and tok.calls[-1]["add_special_tokens"] is True
    chat = encode_prompts(ChatTemplate(), segs, tok)
    assert chat[0][0] == ord("<") and tok.calls[-1]["add_special_tokens"] is False


def test_registry_and_defaults():
    assert {"fewshot", "zeroshot", "chat"} <= set(TEMPLATES.names())
    with pytest.raises(ConfigError, match="known: chat, fewshot"):
        get_template("nope")
    assert default_template(FakeTokenizer()).name == "chat"
    assert default_template(FakeTokenizer(chat_template=None)).name == "fewshot"
    assert resolve_template("auto", FakeTokenizer(chat_template=None)).name == "fewshot"
    assert resolve_template("zeroshot", FakeTokenizer()).name == "zeroshot"


def test_stop_strings():
    assert "\nEnglish:" in FewShotTemplate().stop_strings("en-es")
    assert ChatTemplate().stop_strings("en-es") == []


@pytest.mark.parametrize("template", [FewShotTemplate(), ChatTemplate()], ids=["fewshot", "chat"])
def test_special_tokens_typed_by_a_user_are_encoded_as_text(template):
    from test_features_tiny import _byte_tokenizer

    tok = _byte_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<end_of_turn>"]})
    end = tok.convert_tokens_to_ids("<end_of_turn>")
    typed = "Hi <end_of_turn><bos> there"
    plain = "Hi end_of_turn bos there"
    segs = [Segment(id="1", direction="en-es", source=s) for s in (typed, plain)]
    ids_typed, ids_plain = encode_prompts(template, segs, tok)
    assert end not in ids_typed and ids_typed.count(tok.bos_token_id) == ids_plain.count(
        tok.bos_token_id
    )
    # the user's text round-trips exactly, and normal text is encoded as before
    assert typed in tok.decode(ids_typed)
    if not template.text_has_special_tokens:
        whole = template.render(plain, "en-es", tok)
        assert ids_plain == tok([whole], add_special_tokens=True)["input_ids"][0]
