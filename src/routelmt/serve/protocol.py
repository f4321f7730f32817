"""Typed request models for the HTTP API, and every request limit in one place.

The models say what a body may hold (types, ranges, the length of every string field); what
depends on the server's configuration (the longest text, the most texts per request, the
supported directions) is checked by ``serve.app`` against ``Limits``. A model's validation
error becomes OpenAI's error shape with ``param`` naming the field (``texts[1]``,
``messages[0].content``), so the ``openai`` client raises with the message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "ChatRequest",
    "Limits",
    "TranslateRequest",
    "parse_body",
    "validation_error",
]

# -- limits ---------------------------------------------------------------------------------
MAX_ID_CHARS = 256  # an id goes into the decision log and the response
MAX_NAME_CHARS = 128  # model, role, user, metadata keys
MAX_LANG_CHARS = 32  # "en", "English", "zh-Hans", ...
MAX_META_CHARS = 512  # a metadata value (OpenAI's own limit)
MAX_META_KEYS = 16
MAX_MESSAGES = 64
MAX_INSTRUCTION_CHARS = 8_000  # one system / developer / assistant message
MAX_TOKENS = 32_768
MAX_TEMPERATURE = 2.0


@dataclass(frozen=True)
class Limits:
    """Limits that come from the server's configuration (the rest are the constants above)."""

    max_body_bytes: int = 1_000_000  # checked before parsing: 413
    max_chars: int = 4_000  # one text to translate: 413
    max_items: int = 64  # texts in one /v1/translate request: 413
    body_timeout_s: float = 30.0  # reading the whole body: 408


# -- field types ----------------------------------------------------------------------------
def _utf8(value: str) -> str:
    """Refuse lone surrogates ("\\ud800"): JSON allows them, UTF-8 (and every model) does not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate (not valid Unicode text)") from None
    return value


def _text(max_length: int | None = None) -> Any:
    return Annotated[str, Field(strict=True, max_length=max_length), AfterValidator(_utf8)]


Id = Annotated[str | int, Field(union_mode="left_to_right")]
Lang = _text(MAX_LANG_CHARS)
Name = _text(MAX_NAME_CHARS)
Text = _text()  # its length is a configured limit (413), checked by the app
Policy = Literal["auto", "small", "large"]


_CONTROL = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


def _short_id(value: str | int) -> str:
    """An id is echoed into the logs: bounded, and without control characters (a newline in
    an id would forge a line of the server log)."""
    text = str(value)
    if len(text) > MAX_ID_CHARS:
        raise ValueError(f"at most {MAX_ID_CHARS} characters")
    if _CONTROL.search(text):
        raise ValueError("must not contain control characters (a newline, a tab, ...)")
    return _utf8(text)


ShortId = Annotated[Id, AfterValidator(_short_id)]


class _Request(BaseModel):
    # unknown fields are ignored (OpenAI clients send many); the body size bounds them
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class TranslateRequest(_Request):
    """``/v1/translate``: ``text`` or ``texts``, and the direction."""

    text: Text | None = None
    texts: Annotated[list[Text], Field(min_length=1)] | None = None
    id: ShortId | None = None
    ids: list[ShortId] | None = None
    source_lang: Lang | None = None
    target_lang: Lang | None = None
    direction: Lang | None = None
    policy: Policy | None = None


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    type: Name = "text"
    text: Text | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    role: Name
    content: Text | list[ContentPart] | None = None

    def text(self) -> str | None:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return "".join(p.text for p in self.content if p.text is not None)
        return self.content


class ChatRequest(_Request):
    """``/v1/chat/completions``: OpenAI's request, of which the fields that matter here."""

    messages: Annotated[list[Message], Field(min_length=1, max_length=MAX_MESSAGES)]
    model: Name | None = None
    stream: bool = False
    n: int | None = None
    max_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=MAX_TEMPERATURE, strict=False)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0, strict=False)] | None = None
    user: Name | None = None
    metadata: (
        Annotated[dict[Name, _text(MAX_META_CHARS)], Field(max_length=MAX_META_KEYS)] | None
    ) = None
    source_lang: Lang | None = None
    target_lang: Lang | None = None
    policy: Policy | None = None


_FIELDS = {
    name
    for model in (TranslateRequest, ChatRequest, Message, ContentPart)
    for name in model.model_fields
}


# -- parsing and errors ---------------------------------------------------------------------
class BodyError(Exception):
    """A body that is not a JSON object (or too deep to parse): 400, ``param`` = ``body``."""


MAX_INT_DIGITS = 4_000  # below Python's own limit (4,300), whose error would be a 500


def _bounded_int(text: str) -> int:
    """A JSON integer, refused (400) beyond ``MAX_INT_DIGITS`` digits: Python's int() would
    raise a ValueError naming its own internals, in any field, even an ignored one."""
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise BodyError(f"a number with {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def parse_body(raw: bytes) -> dict[str, Any]:
    """Bytes -> a JSON object; anything else (bad UTF-8, deep nesting, an array, a number too
    long to convert) is BodyError."""
    try:
        data = json.loads(raw, parse_int=_bounded_int)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BodyError(f"not valid JSON ({exc})") from None
    except RecursionError:
        raise BodyError("JSON nested too deeply") from None
    if not isinstance(data, dict):
        raise BodyError(f"expected a JSON object, got {type(data).__name__}")
    return data


def _param(loc: tuple[int | str, ...]) -> str:
    """('messages', 0, 'content', 'str') -> 'messages[0].content' (union tags dropped)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _FIELDS or out == "metadata":
            out += ("." if out else "") + str(part)
        else:
            break
    return out or "body"


def validation_error(exc: ValidationError) -> tuple[str, str]:
    """The first error of ``exc`` as (param, what was wrong)."""
    err = exc.errors(include_url=False, include_input=False)[0]
    param = _param(tuple(err["loc"]))[:100]
    return param, str(err["msg"]).removeprefix("Value error, ")
