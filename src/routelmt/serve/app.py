"""HTTP layer (FastAPI): /v1/translate, OpenAI-compatible /v1/chat/completions, /health, /metrics.

Chat convention (how a plain OpenAI client says what to translate, and into what):

- the text is the content of the **last ``user`` message**;
- the languages come from, in order: body fields ``source_lang``/``target_lang`` (the ``openai``
  client's ``extra_body``), then ``metadata.source_lang``/``metadata.target_lang``, then a
  system message such as "Translate from English to Spanish" (names or ISO codes), then the
  configured ``default_direction``; a missing source language defaults to its source side;
- the policy comes from the ``policy`` body field, else ``model``: ``small`` / ``large`` (or
  the configured models' names) force a tier, anything else (e.g. ``routelmt``) is ``auto``.

Every response, and every streamed chunk, carries ``routing``: the model that answered, its
tier, the router score, the threshold, the decision, the fallback flag and the budget state.
Bad requests are 4xx with ``{"error": {"message", "type", "param", "code"}}``, ``param`` naming
the field (OpenAI's error shape, so the ``openai`` client raises with the message).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from routelmt.errors import ConfigError
from routelmt.hybrid import POLICIES, HybridResult
from routelmt.languages import LANGUAGE_NAMES, parse_direction
from routelmt.records import Segment
from routelmt.serve.service import SmallModelError, TranslationService

log = logging.getLogger(__name__)

_NAME_TO_CODE = {name.lower(): code for code, name in LANGUAGE_NAMES.items()}
_LANG = r"([A-Za-z]{2,}(?:[-_][A-Za-z]{2})?)"
_FROM_TO = re.compile(rf"\bfrom\s+{_LANG}\s+(?:in)?to\s+{_LANG}", re.IGNORECASE)
_TO = re.compile(rf"\b(?:in)?to\s+{_LANG}", re.IGNORECASE)


class RequestError(Exception):
    """A client mistake: status, the field at fault, and what was expected."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(f"field '{field}': {message}")
        self.status = status
        self.field = field


def _error(status: int, message: str, field: str | None, kind: str) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": field, "code": status}}
    return JSONResponse(body, status_code=status)


def _lang_code(word: str) -> str | None:
    w = word.lower().replace("_", "-")
    if w in _NAME_TO_CODE:
        return _NAME_TO_CODE[w]
    base = w.split("-")[0]
    return base if base in LANGUAGE_NAMES and len(base) == 2 else None


def languages_from_instruction(text: str) -> tuple[str | None, str | None]:
    """'Translate from English to Spanish' -> ('en', 'es'); unknown words are ignored."""
    for m in _FROM_TO.finditer(text):
        src, tgt = _lang_code(m.group(1)), _lang_code(m.group(2))
        if src and tgt:
            return src, tgt
    for m in _TO.finditer(text):
        tgt = _lang_code(m.group(1))
        if tgt:
            return None, tgt
    return None, None


class Api:
    """Request parsing and validation around a TranslationService."""

    def __init__(self, service: TranslationService) -> None:
        self.service = service

    # -- validation helpers ---------------------------------------------------------------
    @staticmethod
    async def body(request: Request) -> dict[str, Any]:
        try:
            data = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(400, "body", f"not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise RequestError(400, "body", f"expected a JSON object, got {type(data).__name__}")
        return data

    @staticmethod
    def opt_str(data: dict[str, Any], name: str, where: str = "") -> str | None:
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise RequestError(400, where + name, f"expected a string, got {type(value).__name__}")
        return value

    def direction(self, src: str | None, tgt: str | None, field: str) -> str:
        default_src, default_tgt = parse_direction(self.service.default_direction)
        if tgt is None and src is None:
            return self.service.default_direction
        src = src or default_src
        tgt = tgt or default_tgt
        direction = f"{src}-{tgt}".lower()
        try:
            parse_direction(direction)
        except ConfigError as exc:
            raise RequestError(400, field, str(exc)) from None
        allowed = self.service.directions
        if allowed is not None and direction not in allowed:
            raise RequestError(
                400,
                field,
                f"unsupported language pair {direction}; supported: {', '.join(allowed)}",
            )
        return direction

    def policy(self, value: Any, field: str = "policy") -> str:
        if value is None:
            return "auto"
        if not isinstance(value, str) or value not in POLICIES:
            raise RequestError(
                400, field, f"expected one of {', '.join(POLICIES)}, got {value!r:.40}"
            )
        if value != "auto" and not self.service.allow_policy_override:
            raise RequestError(403, field, "policy overrides are disabled on this server")
        return value

    def check_text(self, text: Any, field: str) -> str:
        if not isinstance(text, str):
            raise RequestError(400, field, f"expected a string, got {type(text).__name__}")
        if not text.strip():
            raise RequestError(400, field, "must not be empty")
        if len(text) > self.service.max_chars:
            raise RequestError(
                413, field, f"{len(text)} characters, over the limit of {self.service.max_chars}"
            )
        return text

    # -- /v1/translate ----------------------------------------------------------------------
    def parse_translate(
        self, data: dict[str, Any], request_id: str
    ) -> tuple[list[Segment], str, bool]:
        has_text, has_texts = "text" in data, "texts" in data
        if has_text == has_texts:
            raise RequestError(
                400, "text", "give exactly one of 'text' (a string) or 'texts' (a list)"
            )
        if has_text:
            texts = [self.check_text(data["text"], "text")]
            single = True
        else:
            raw = data["texts"]
            if not isinstance(raw, list) or not raw:
                raise RequestError(400, "texts", "expected a non-empty list of strings")
            if len(raw) > self.service.max_items:
                raise RequestError(
                    413, "texts", f"{len(raw)} texts, over the limit of {self.service.max_items}"
                )
            texts = [self.check_text(t, f"texts[{i}]") for i, t in enumerate(raw)]
            single = False
        ids: list[str]
        if single and data.get("id") is not None:
            if not isinstance(data["id"], (str, int)) or isinstance(data["id"], bool):
                raise RequestError(400, "id", "expected a string")
            ids = [str(data["id"])]
        elif not single and data.get("ids") is not None:
            raw_ids = data["ids"]
            if not isinstance(raw_ids, list) or len(raw_ids) != len(texts):
                raise RequestError(400, "ids", f"expected a list of {len(texts)} strings")
            if not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in raw_ids):
                raise RequestError(400, "ids", "every id must be a string")
            ids = [str(x) for x in raw_ids]
        else:
            ids = [f"{request_id}-{i}" for i in range(len(texts))]
        src = self.opt_str(data, "source_lang")
        tgt = self.opt_str(data, "target_lang")
        direction_field = self.opt_str(data, "direction")
        if direction_field is not None:
            if src or tgt:
                raise RequestError(400, "direction", "give 'direction' or source_lang/target_lang")
            try:
                src, tgt = parse_direction(direction_field)
            except ConfigError as exc:
                raise RequestError(400, "direction", str(exc)) from None
        direction = self.direction(src, tgt, "direction" if direction_field else "target_lang")
        policy = self.policy(data.get("policy"))
        segments = [Segment(id=i, direction=direction, source=t) for i, t in zip(ids, texts)]
        return segments, policy, single

    async def translate(self, request: Request) -> JSONResponse:
        data = await self.body(request)
        request_id = self.service.new_request_id()
        segments, policy, single = self.parse_translate(data, request_id)
        results = await self.service.translate(
            segments, policy, request_id=request_id, endpoint="translate"
        )
        out: dict[str, Any] = {
            "request_id": request_id,
            "results": [self.public(r) for r in results],
            "budget": results[-1].budget,
        }
        if single:
            out.update({k: v for k, v in out["results"][0].items()})
        return JSONResponse(out)

    @staticmethod
    def public(r: HybridResult) -> dict[str, Any]:
        d = r.to_dict()
        d.pop("budget")
        return d

    # -- /v1/chat/completions --------------------------------------------------------------
    def parse_chat(self, data: dict[str, Any], request_id: str) -> tuple[Segment, str, bool]:
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RequestError(400, "messages", "expected a non-empty list of messages")
        text: str | None = None
        instruction = ""
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                raise RequestError(400, f"messages[{i}]", "expected {'role': str, 'content': ...}")
            content = m.get("content")
            if isinstance(content, list):  # content parts: keep the text ones
                parts = [p.get("text") for p in content if isinstance(p, dict)]
                content = "".join(p for p in parts if isinstance(p, str))
            if not isinstance(content, str):
                raise RequestError(
                    400,
                    f"messages[{i}].content",
                    f"expected a string, got {type(content).__name__}",
                )
            if m["role"] == "user":
                text = content
            elif m["role"] in ("system", "developer"):
                instruction += content + "\n"
        if text is None:
            raise RequestError(
                400, "messages", "no message with role 'user' (the text to translate)"
            )
        self.check_text(text, "messages")
        stream = data.get("stream", False)
        if not isinstance(stream, bool):
            raise RequestError(400, "stream", f"expected a boolean, got {type(stream).__name__}")
        n = data.get("n")
        if n is not None and n != 1:
            raise RequestError(400, "n", "only n=1 is supported")
        src = self.opt_str(data, "source_lang")
        tgt = self.opt_str(data, "target_lang")
        field = "target_lang"
        meta = data.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise RequestError(400, "metadata", "expected an object")
        if src is None and tgt is None and meta:
            src = self.opt_str(meta, "source_lang", "metadata.")
            tgt = self.opt_str(meta, "target_lang", "metadata.")
            field = "metadata.target_lang"
        if src is None and tgt is None and instruction:
            src, tgt = languages_from_instruction(instruction)
            field = "messages"
        direction = self.direction(src, tgt, field)
        policy_value = data.get("policy")
        model = self.opt_str(data, "model")
        if policy_value is None and model is not None:
            hybrid = self.service.hybrid
            if model in ("small", hybrid.small.name):
                policy_value = "small"
            elif model in ("large", hybrid.large.name):
                policy_value = "large"
        policy = self.policy(policy_value)
        return Segment(id=request_id, direction=direction, source=text), policy, stream

    async def chat(self, request: Request) -> Any:
        data = await self.body(request)
        request_id = self.service.new_request_id()
        segment, policy, stream = self.parse_chat(data, request_id)
        (result,) = await self.service.translate(
            [segment], policy, request_id=request_id, endpoint="chat"
        )
        routing = result.to_dict()
        routing.pop("translation")
        created = int(time.time())
        cid = f"chatcmpl-{request_id}"
        if not stream:
            return JSONResponse(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": result.model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": result.translation},
                            "finish_reason": "stop",
                        }
                    ],
                    "routing": routing,
                }
            )

        def chunk(delta: dict[str, Any], finish: str | None) -> str:
            body = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": result.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                "routing": routing,
            }
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        async def events() -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""}, None)
            for piece in re.findall(r"\S+\s*|\s+", result.translation):
                yield chunk({"content": piece}, None)
            yield chunk({}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


def create_app(service: TranslationService, *, close_on_shutdown: bool = True) -> FastAPI:
    """The ASGI app; ``service`` is closed (batcher drained, log flushed) on shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if close_on_shutdown:
            service.close()

    app = FastAPI(title="RouteLMT", lifespan=lifespan)
    app.state.service = service
    api = Api(service)
    metrics = service.metrics

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Any:
        t0 = time.perf_counter()
        path = request.url.path
        endpoint = path if path in ENDPOINTS else "other"
        try:
            response = await call_next(request)
        except Exception as exc:  # answered as JSON; the connection stays usable
            log.exception("internal error on %s", path)
            metrics.errors.inc("internal")
            message = f"internal error: {type(exc).__name__}: {exc}"
            response = _error(500, message, None, "internal_error")
        metrics.requests.inc(endpoint, str(response.status_code))
        metrics.request_latency.observe(time.perf_counter() - t0, endpoint)
        if response.status_code >= 400:
            metrics.errors.inc(f"http_{response.status_code}")
        return response

    @app.exception_handler(RequestError)
    async def bad_request(request: Request, exc: RequestError) -> JSONResponse:
        return _error(exc.status, str(exc), exc.field, "invalid_request_error")

    @app.exception_handler(SmallModelError)
    async def small_failed(request: Request, exc: SmallModelError) -> JSONResponse:
        return _error(502, str(exc), None, "backend_error")

    @app.post("/v1/translate")
    async def translate(request: Request) -> Any:
        return await api.translate(request)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        return await api.chat(request)

    @app.get("/health")
    async def health() -> Any:
        return service.health()

    @app.get("/metrics")
    async def prometheus() -> Any:
        return PlainTextResponse(
            metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    return app


ENDPOINTS = ("/v1/translate", "/v1/chat/completions", "/health", "/metrics")
