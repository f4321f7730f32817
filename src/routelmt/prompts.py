"""Direction-aware translation prompts: few-shot text for base models, chat templates for
instruct models.

The router reads the small model's hidden state at the end of *this* prompt, so a router artifact
is only valid with the template it was trained on: every template has a ``fingerprint()`` (a
hash of all its text) that caches and artifacts record and check.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from routelmt.errors import ConfigError
from routelmt.languages import language_name, parse_direction
from routelmt.records import Segment
from routelmt.registry import Registry
from routelmt.storage import stable_hash

# The same three sentences in every language, so any pair of listed languages has examples
# (German -> Hindi pairs the German and Hindi lines; nothing pivots through English at runtime).
EXAMPLES: dict[str, tuple[str, str, str]] = {
    "en": (
        "Where is the nearest train station?",
        "Thank you very much for your help.",
        "The city council approved the new budget on Monday.",
    ),
    "es": (
        "¿Dónde está la estación de tren más cercana?",
        "Muchas gracias por tu ayuda.",
        "El ayuntamiento aprobó el nuevo presupuesto el lunes.",
    ),
    "de": (
        "Wo ist der nächste Bahnhof?",
        "Vielen Dank für deine Hilfe.",
        "Der Stadtrat hat am Montag den neuen Haushalt verabschiedet.",
    ),
    "fr": (
        "Où est la gare la plus proche ?",
        "Merci beaucoup pour votre aide.",
        "Le conseil municipal a approuvé le nouveau budget lundi.",
    ),
    "it": (
        "Dov'è la stazione ferroviaria più vicina?",
        "Grazie mille per il tuo aiuto.",
        "Il consiglio comunale ha approvato lunedì il nuovo bilancio.",
    ),
    "pt": (
        "Onde fica a estação de trem mais próxima?",
        "Muito obrigado pela sua ajuda.",
        "A câmara municipal aprovou o novo orçamento na segunda-feira.",
    ),
    "cs": (
        "Kde je nejbližší vlakové nádraží?",
        "Moc děkuji za vaši pomoc.",
        "Městská rada v pondělí schválila nový rozpočet.",
    ),
    "ru": (
        "Где ближайший железнодорожный вокзал?",
        "Большое спасибо за вашу помощь.",
        "Городской совет в понедельник утвердил новый бюджет.",
    ),
    "uk": (
        "Де найближча залізнична станція?",
        "Щиро дякую за вашу допомогу.",
        "Міська рада в понеділок затвердила новий бюджет.",
    ),
    "is": (
        "Hvar er næsta lestarstöð?",
        "Kærar þakkir fyrir hjálpina.",
        "Borgarstjórn samþykkti nýju fjárhagsáætlunina á mánudag.",
    ),
    "hi": (
        "सबसे नज़दीकी रेलवे स्टेशन कहाँ है?",
        "आपकी मदद के लिए बहुत-बहुत धन्यवाद।",
        "नगर परिषद ने सोमवार को नए बजट को मंज़ूरी दी।",
    ),
    "zh": (
        "最近的火车站在哪里？",
        "非常感谢你的帮助。",
        "市议会周一批准了新预算。",
    ),
    "ja": (
        "一番近い駅はどこですか？",
        "助けてくれて本当にありがとうございます。",
        "市議会は月曜日に新しい予算を承認した。",
    ),
}  # fmt: skip


# A second example set for re-decoding a failed output (``repair``): longer sentences of other
# domains, none sharing words with ``EXAMPLES``. Languages missing here make the prompt zero-shot.
ALT_EXAMPLES: dict[str, tuple[str, str]] = {
    "en": (
        "The museum will reopen next spring after a two-year renovation, and entry will remain free for children.",  # noqa: E501
        "I tried the new update yesterday, but the app still crashes whenever I open the settings.",
    ),
    "es": (
        "El museo reabrirá la próxima primavera tras una renovación de dos años, y la entrada seguirá siendo gratuita para los niños.",  # noqa: E501
        "Ayer probé la nueva actualización, pero la aplicación sigue cerrándose cada vez que abro la configuración.",  # noqa: E501
    ),
    "de": (
        "Das Museum wird nach einer zweijährigen Renovierung im nächsten Frühjahr wieder öffnen, und der Eintritt bleibt für Kinder kostenlos.",  # noqa: E501
        "Ich habe gestern das neue Update ausprobiert, aber die App stürzt immer noch ab, sobald ich die Einstellungen öffne.",  # noqa: E501
    ),
    "fr": (
        "Le musée rouvrira au printemps prochain après deux ans de rénovation, et l'entrée restera gratuite pour les enfants.",  # noqa: E501
        "J'ai essayé la nouvelle mise à jour hier, mais l'application plante toujours dès que j'ouvre les paramètres.",  # noqa: E501
    ),
    "it": (
        "Il museo riaprirà la prossima primavera dopo una ristrutturazione di due anni, e l'ingresso resterà gratuito per i bambini.",  # noqa: E501
        "Ieri ho provato il nuovo aggiornamento, ma l'app si blocca ancora ogni volta che apro le impostazioni.",  # noqa: E501
    ),
    "pt": (
        "O museu vai reabrir na próxima primavera, após uma reforma de dois anos, e a entrada continuará gratuita para crianças.",  # noqa: E501
        "Ontem experimentei a nova atualização, mas o aplicativo ainda trava sempre que abro as configurações.",  # noqa: E501
    ),
    "ru": (
        "Музей вновь откроется следующей весной после двухлетней реконструкции, а вход для детей останется бесплатным.",  # noqa: E501
        "Вчера я попробовал новое обновление, но приложение по-прежнему вылетает каждый раз, когда я открываю настройки.",  # noqa: E501
    ),
    "zh": (
        "博物馆经过两年的翻修后将于明年春天重新开放，儿童仍可免费入场。",
        "我昨天试了新的更新，但每次打开设置时应用程序仍然会崩溃。",
    ),
    "ja": (
        "博物館は2年間の改修を経て来春再開し、子どもの入場は引き続き無料となる。",
        "昨日新しいアップデートを試したが、設定を開くたびにアプリがまだクラッシュする。",
    ),
}  # fmt: skip


class PromptTemplate(ABC):
    """Turns (source, direction) into the prompt text a model continues with the translation."""

    name: str
    #: whether the tokenizer should add its own BOS etc. (False when the text already has them)
    add_special_tokens: bool = True
    #: whether the rendered template text itself holds special tokens (a chat template's turn
    #: markers), which must be parsed as such while the user's text must not
    text_has_special_tokens: bool = False

    @abstractmethod
    def render(self, source: str, direction: str, tokenizer: Any = None) -> str:
        """The prompt text; the model's continuation is the translation."""

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """Every piece of text and setting that shapes the prompt (what the fingerprint hashes)."""

    def fingerprint(self) -> str:
        return stable_hash(type(self).__name__, self.name, self.spec())

    def stop_strings(self, direction: str) -> list[str]:
        """Where a decoded continuation ends (for generation)."""
        return []


@dataclass
class FewShotTemplate(PromptTemplate):
    """Plain-text few-shot prompt for base models (Gemma-3-270M): fixed example pairs, then the
    source and the target-language label; the continuation is the translation."""

    name: str = "fewshot"
    header: str = "Translate the following sentences from {src_name} to {tgt_name}.\n\n"
    line: str = "{src_name}: {source}\n{tgt_name}:"
    separator: str = "\n\n"
    shots: int = 3
    examples: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(EXAMPLES))
    add_special_tokens: bool = True

    def examples_for(self, direction: str) -> list[tuple[str, str]]:
        src, tgt = parse_direction(direction)
        if src not in self.examples or tgt not in self.examples:
            return []  # zero-shot: no examples for this pair
        return list(zip(self.examples[src], self.examples[tgt]))[: self.shots]

    def render(self, source: str, direction: str, tokenizer: Any = None) -> str:
        src, tgt = parse_direction(direction)
        names = {"src_name": language_name(src), "tgt_name": language_name(tgt)}
        parts = [self.header.format(**names)]
        for example_src, example_tgt in self.examples_for(direction):
            parts.append(self.line.format(source=example_src, **names) + " " + example_tgt)
            parts.append(self.separator)
        parts.append(self.line.format(source=source.strip(), **names))
        return "".join(parts)

    def spec(self) -> dict[str, Any]:
        return {
            "header": self.header,
            "line": self.line,
            "separator": self.separator,
            "shots": self.shots,
            "examples": {k: list(v) for k, v in sorted(self.examples.items())},
            "add_special_tokens": self.add_special_tokens,
        }

    def stop_strings(self, direction: str) -> list[str]:
        src = language_name(parse_direction(direction)[0])
        return [self.separator, f"\n{src}:"]


@dataclass
class ChatTemplate(PromptTemplate):
    """One user turn through the tokenizer's own chat template, for instruct models (SmolLM2)."""

    name: str = "chat"
    instruction: str = (
        "Translate the following text from {src_name} to {tgt_name}. "
        "Reply with the translation only.\n\n{source}"
    )
    system: str | None = None
    add_special_tokens: bool = False  # the chat template writes the special tokens itself
    text_has_special_tokens: bool = True

    def messages(self, source: str, direction: str) -> list[dict[str, str]]:
        src, tgt = parse_direction(direction)
        content = self.instruction.format(
            src_name=language_name(src), tgt_name=language_name(tgt), source=source.strip()
        )
        messages = [{"role": "system", "content": self.system}] if self.system else []
        return messages + [{"role": "user", "content": content}]

    def render(self, source: str, direction: str, tokenizer: Any = None) -> str:
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                f"prompt template '{self.name}' needs a tokenizer with a chat template; this "
                "model has none (it is probably a base model): use --template fewshot"
            )
        return tokenizer.apply_chat_template(
            self.messages(source, direction), tokenize=False, add_generation_prompt=True
        )

    def spec(self) -> dict[str, Any]:
        return {"instruction": self.instruction, "system": self.system}


TEMPLATES: Registry[PromptTemplate] = Registry("prompt template")
TEMPLATES.register(FewShotTemplate)
TEMPLATES.register(ChatTemplate)
# zeroshot is a setting of fewshot, not a class of its own (its fingerprint names FewShotTemplate)
TEMPLATES.register("zeroshot")(functools.partial(FewShotTemplate, name="zeroshot", shots=0))
# the repair prompt's other example set (``routelmt.repair``)
TEMPLATES.register("fewshot-alt")(
    functools.partial(FewShotTemplate, name="fewshot-alt", examples=dict(ALT_EXAMPLES))
)


def get_template(name: str | PromptTemplate) -> PromptTemplate:
    """A registered template by name (an instance passes through)."""
    if isinstance(name, PromptTemplate):
        return name
    return TEMPLATES.create(name)


def default_template(tokenizer: Any) -> PromptTemplate:
    """The chat template for instruct models (the tokenizer has one), few-shot for base models."""
    return ChatTemplate() if getattr(tokenizer, "chat_template", None) else FewShotTemplate()


def resolve_template(name: str | PromptTemplate | None, tokenizer: Any) -> PromptTemplate:
    """``None`` or ``"auto"`` picks ``default_template``; anything else goes by name."""
    if name is None or name == "auto":
        return default_template(tokenizer)
    return get_template(name)


def render_prompts(
    template: PromptTemplate, segments: Sequence[Segment], tokenizer: Any = None
) -> list[str]:
    return [template.render(s.source, s.direction, tokenizer) for s in segments]


SOURCE_MARKER = "\ue000routelmt-source\ue001"  # private-use characters: never in real text


def encode_prompts(
    template: PromptTemplate, segments: Sequence[Segment], tokenizer: Any
) -> list[list[int]]:
    """Token ids per prompt, unpadded (batching pads on the left later).

    The user's text is always encoded as text: a control-token string typed by a user
    (``<end_of_turn>``, ``<bos>``) becomes ordinary tokens and cannot end the turn or change
    the prompt. A template whose own text holds special tokens (a chat template) is encoded in
    three pieces: the template before the source (special tokens parsed), the source (not),
    the template after it (parsed), when the user's text holds such a string; otherwise it is
    encoded whole, exactly as before (pieces would tokenize the boundaries differently).
    """
    if not segments:
        return []
    if not template.text_has_special_tokens:
        texts = render_prompts(template, segments, tokenizer)
        encoded = tokenizer(
            texts, add_special_tokens=template.add_special_tokens, split_special_tokens=True
        )
        return [list(ids) for ids in encoded["input_ids"]]
    specials = _special_strings(tokenizer)
    hostile = [i for i, s in enumerate(segments) if any(sp in s.source for sp in specials)]
    texts = render_prompts(template, segments, tokenizer)
    out = [
        list(ids)
        for ids in tokenizer(texts, add_special_tokens=template.add_special_tokens)["input_ids"]
    ]
    if not hostile:  # the usual case: the whole prompt at once, as the model was trained
        return out
    befores, afters = [], []
    for i in hostile:
        rendered = template.render(SOURCE_MARKER, segments[i].direction, tokenizer)
        before, found, after = rendered.partition(SOURCE_MARKER)
        if not found:
            raise ConfigError(f"prompt template '{template.name}' does not include the source")
        befores.append(before)
        afters.append(after)
    head = tokenizer(befores, add_special_tokens=template.add_special_tokens)["input_ids"]
    tail = tokenizer(afters, add_special_tokens=False)["input_ids"]
    sources = [segments[i].source.strip() for i in hostile]
    body = tokenizer(sources, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    for i, h, b, t in zip(hostile, head, body, tail, strict=True):
        out[i] = list(h) + list(b) + list(t)
    return out


def _special_strings(tokenizer: Any) -> list[str]:
    """The text forms of the tokenizer's special tokens (what a user must not smuggle in)."""
    found = set(getattr(tokenizer, "all_special_tokens", None) or [])
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    found |= {str(t) for t in added.values() if getattr(t, "special", False)}
    return [t for t in found if t]
