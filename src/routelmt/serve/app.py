"""HTTP layer (FastAPI): /v1/translate, OpenAI-compatible /v1/chat/completions, /health, /metrics,
/dashboard (``serve.dashboard``).

Chat convention (how a plain OpenAI client says what to translate, and into what):

- the text is the content of the **last ``user`` message**;
- the languages come from, in order: body fields ``source_lang``/``target_lang`` (the ``openai``
  client's ``extra_body``), then ``metadata.source_lang``/``metadata.target_lang``, then a
  system message such as "Translate from English to Spanish" (names or ISO codes;
  ``serve.instructions``), then the configured ``default_direction``; a missing source language
  defaults to its source side; a language given empty, or one the system message names that is
  no language we know ("Translate to Klingon"), is a 400, never the default;
- the policy comes from the ``policy`` body field, else ``model`` (``GET /v1/models`` lists
  every name): ``routelmt`` (or ``auto``) lets the router and the budget decide; ``small`` /
  ``large`` (or the served models' own names) force that tier, which the server must allow
  (``allow_policy_override``, else 403); a middle tier cannot be forced (400); any other name is
  a 400 naming the known ones (never silently answered by some model). No ``model``: ``auto``.

Every answer carries ``usage`` (OpenAI's prompt/completion/total tokens; ``serve.usage``) and
``cost`` (what it cost, what the most expensive tier would have cost, the saving).

Every response, and every streamed chunk, carries ``routing``: the model that answered, its
tier, the router score, the threshold, the decision, the fallback flag and the budget state.
Bad requests are 4xx with ``{"error": {"message", "type", "param", "code"}}``, ``param`` naming
the field (OpenAI's error shape, so the ``openai`` client raises with the message). Request
bodies are typed in ``serve.protocol`` (every limit is there); before a body is parsed, the
Host header, the API key, the Content-Type and the size are checked (``serve.security``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from routelmt.errors import ConfigError
from routelmt.hybrid import HybridResult
from routelmt.languages import parse_direction
from routelmt.records import Segment
from routelmt.redact import redact
from routelmt.serve.dashboard import DASHBOARD_PATHS, add_dashboard_routes
from routelmt.serve.instructions import UnknownLanguage, lang_code, languages_from_instruction
from routelmt.serve.protocol import (
    MAX_INSTRUCTION_CHARS,
    BodyError,
    ChatRequest,
    Limits,
    TranslateRequest,
    parse_body,
    validation_error,
)
from routelmt.serve.security import Security
from routelmt.serve.service import (
    FAILED_TIER,
    SmallModelError,
    TranslationService,
    fallback_reason,
)

log = logging.getLogger(__name__)


class RequestError(Exception):
    """A client mistake: status, the field at fault, and what was expected."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(f"field '{field}': {message}")
        self.status = status
        self.field = field


def _error(status: int, message: str, field: str | None, kind: str) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": field, "code": status}}
    return JSONResponse(body, status_code=status)


class Api:
    """Request parsing and validation around a TranslationService."""

    def __init__(self, service: TranslationService, limits: Limits) -> None:
        self.service = service
        self.limits = limits

    # -- the body ---------------------------------------------------------------------------
    async def body(self, request: Request) -> dict[str, Any]:
        """Content-Type, then size (before reading, and while reading), then JSON."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json" and not (
            kind.startswith("application/") and kind.endswith("+json")
        ):
            raise RequestError(
                415, "body", f"expected Content-Type application/json, got {kind or 'none'!r:.60}"
            )
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(413, "body", f"{declared} bytes, over the limit of {limit}")

        async def read() -> bytes:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestError(413, "body", f"over the limit of {limit} bytes")
                chunks.append(chunk)
            return b"".join(chunks)

        try:
            raw = await asyncio.wait_for(read(), self.limits.body_timeout_s)
        except TimeoutError:
            raise RequestError(
                408, "body", f"not received within {self.limits.body_timeout_s:g} s"
            ) from None
        try:
            return parse_body(raw)
        except BodyError as exc:
            raise RequestError(400, "body", str(exc)) from None

    @staticmethod
    def model(kind: type[BaseModel], data: dict[str, Any]) -> Any:
        try:
            return kind.model_validate(data)
        except ValidationError as exc:
            param, message = validation_error(exc)
            raise RequestError(400, param, message) from None

    # -- checks that depend on the configuration -------------------------------------------
    def direction(self, src: str | None, tgt: str | None, field: str) -> str:
        """The request's direction: a language given empty is a 400 (never the default); a
        name or a regional code ("Spanish", "zh-Hans") is read as its ISO code."""
        for value, name in ((src, field.replace("target", "source")), (tgt, field)):
            if value is not None and not value.strip():
                raise RequestError(400, name, "must not be empty (leave it out for the default)")
        default_src, default_tgt = parse_direction(self.service.default_direction)
        if tgt is None and src is None:
            return self.service.default_direction
        src = (lang_code(src) or src) if src else default_src
        tgt = (lang_code(tgt) or tgt) if tgt else default_tgt
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
        refused = self.service.hybrid.small.writes(direction)
        if refused is not None:
            raise RequestError(400, field, f"unsupported language pair {direction}: {refused}")
        return direction

    def policy(self, value: str | None, field: str = "policy") -> str:
        if value is None:
            return "auto"
        if value != "auto" and not self.service.allow_policy_override:
            raise RequestError(403, field, "policy overrides are disabled on this server")
        return value

    def check_text(self, text: str, field: str) -> str:
        if not text.strip():
            raise RequestError(400, field, "must not be empty")
        if len(text) > self.limits.max_chars:
            raise RequestError(
                413, field, f"{len(text)} characters, over the limit of {self.limits.max_chars}"
            )
        return text

    # -- /v1/translate ----------------------------------------------------------------------
    def parse_translate(
        self, data: dict[str, Any], request_id: str
    ) -> tuple[list[Segment], str, bool]:
        req: TranslateRequest = self.model(TranslateRequest, data)
        if (req.text is None) == (req.texts is None):
            raise RequestError(
                400, "text", "give exactly one of 'text' (a string) or 'texts' (a list)"
            )
        single = req.text is not None
        if req.text is not None:
            texts = [self.check_text(req.text, "text")]
        else:
            assert req.texts is not None
            if len(req.texts) > self.limits.max_items:
                raise RequestError(
                    413,
                    "texts",
                    f"{len(req.texts)} texts, over the limit of {self.limits.max_items}",
                )
            texts = [self.check_text(t, f"texts[{i}]") for i, t in enumerate(req.texts)]
        if single and req.id is not None:
            ids = [str(req.id)]
        elif not single and req.ids is not None:
            if len(req.ids) != len(texts):
                raise RequestError(400, "ids", f"expected a list of {len(texts)} strings")
            ids = [str(x) for x in req.ids]
        else:
            ids = [f"{request_id}-{i}" for i in range(len(texts))]
        src, tgt = req.source_lang, req.target_lang
        if req.direction is not None:
            if src is not None or tgt is not None:
                raise RequestError(400, "direction", "give 'direction' or source_lang/target_lang")
            try:
                src, tgt = parse_direction(req.direction)
            except ConfigError as exc:
                raise RequestError(400, "direction", str(exc)) from None
        direction = self.direction(src, tgt, "direction" if req.direction else "target_lang")
        policy = self.policy(req.policy)
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
            "failed": sum(r.tier == FAILED_TIER for r in results),
            "budget": results[-1].budget,
            "usage": {
                key: sum((r.usage or {}).get(key, 0) for r in results)
                for key in ("prompt_tokens", "completion_tokens", "total_tokens")
            },
            "cost": {
                key: sum(r.cost.get(key, 0.0) for r in results)
                for key in ("cost", "all_large", "saved")
            },
        }
        if single:
            out.update({k: v for k, v in out["results"][0].items()})
        return JSONResponse(out)

    def public(self, r: HybridResult) -> dict[str, Any]:
        """What a client sees: no budget copy per item, and no upstream details in ``error``
        (an endpoint's URL or error body may hold credentials; the decision log has them).
        A text no model translated has ``translation`` and ``tier`` null and says so.
        ``zero_shot``: the router was not trained on this direction (None: it needs no
        training, or records none)."""
        d = r.to_dict()
        d.pop("budget")
        d["zero_shot"] = self.service.zero_shot(r.direction)
        if r.tier == FAILED_TIER:  # the other texts of the request are answered
            d.update(tier=None, model=None, error="the small model failed on this text")
        elif d["error"]:
            d["error"] = f"large model call failed ({fallback_reason(d['error'])})"
        return d

    # -- /v1/chat/completions --------------------------------------------------------------
    def parse_chat(self, data: dict[str, Any], request_id: str) -> tuple[Segment, str, bool]:
        req: ChatRequest = self.model(ChatRequest, data)
        text: str | None = None
        instruction = ""
        for i, m in enumerate(req.messages):
            content = m.text()
            if content is None:
                raise RequestError(400, f"messages[{i}].content", "expected a string, got null")
            if m.role == "user":
                text = content
            elif m.role in ("system", "developer"):
                instruction += content + "\n"
        if text is None:
            raise RequestError(
                400, "messages", "no message with role 'user' (the text to translate)"
            )
        self.check_text(text, "messages")
        if len(instruction) > MAX_INSTRUCTION_CHARS:
            raise RequestError(
                413, "messages", f"system messages over {MAX_INSTRUCTION_CHARS} characters"
            )
        if req.n is not None and req.n != 1:
            raise RequestError(400, "n", "only n=1 is supported")
        src, tgt = req.source_lang, req.target_lang
        field = "target_lang"
        meta = req.metadata or {}
        if src is None and tgt is None and meta:
            src, tgt = meta.get("source_lang"), meta.get("target_lang")
            field = "metadata.target_lang"
        try:
            said_src, said_tgt = (
                languages_from_instruction(instruction) if instruction else (None, None)
            )
        except UnknownLanguage as exc:  # never answered in some default direction instead
            raise RequestError(400, "messages", str(exc)) from None
        if src is None and tgt is None:
            src, tgt, field = said_src, said_tgt, "messages"
        else:  # both given: they must agree
            for asked, said in ((src, said_src), (tgt, said_tgt)):
                if asked and said and lang_code(asked) not in (None, said):
                    raise RequestError(
                        400,
                        "messages",
                        f"the system message asks for {said}, the request for {asked}",
                    )
        direction = self.direction(src, tgt, field)
        policy_value = req.policy
        if req.model is not None:
            by_model = self.model_policy(req.model)
            policy_value = policy_value or by_model
        policy = self.policy(policy_value)
        return Segment(id=request_id, direction=direction, source=text), policy, req.stream

    def models(self) -> dict[str, str | None]:
        """Every model name a chat request may give, and the policy it means."""
        hybrid = self.service.hybrid
        out: dict[str, str | None] = {ALIAS: "auto", "auto": "auto"}
        top = max((n for n in hybrid.costs if n != "small"), key=lambda n: hybrid.costs[n])
        for tier in hybrid.costs:
            policy = "small" if tier == "small" else "large" if tier == top else None
            out.setdefault(tier, policy)
            out.setdefault(self.service.model_of(tier), policy)
        return out

    def model_policy(self, model: str) -> str | None:
        """``model`` -> a policy (None: auto); unknown names and middle tiers are a 400."""
        known = self.models()
        if model not in known:
            raise RequestError(
                400,
                "model",
                f"unknown model {model!r:.60}; this server answers {', '.join(known)} "
                "(GET /v1/models)",
            )
        policy = known[model]
        if policy is None:
            raise RequestError(
                400, "model", f"{model!r:.60} is a middle tier, which cannot be forced; use {ALIAS}"
            )
        return None if policy == "auto" else policy

    def list_models(self) -> dict[str, Any]:
        """``GET /v1/models`` in OpenAI's shape (``client.models.list()``)."""
        created = int(self.service.started)
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": created, "owned_by": "routelmt"}
                for name in self.models()
            ],
        }

    async def chat(self, request: Request) -> Any:
        data = await self.body(request)
        request_id = self.service.new_request_id()
        segment, policy, stream = self.parse_chat(data, request_id)
        (result,) = await self.service.translate(
            [segment], policy, request_id=request_id, endpoint="chat"
        )
        routing = {**self.public(result), "budget": result.budget}
        routing.pop("translation")
        usage = routing.pop("usage")
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
                    "usage": usage,
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
            if finish is not None:  # the last chunk, as with stream_options.include_usage
                body["usage"] = usage
            return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

        async def events() -> AsyncIterator[str]:
            yield chunk({"role": "assistant", "content": ""}, None)
            for piece in re.findall(r"\S+\s*|\s+", result.translation):
                yield chunk({"content": piece}, None)
            yield chunk({}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


def gate(request: Request, security: Security, open_paths: set[str]) -> JSONResponse | None:
    """Host and key, before anything is read: a refused request costs nothing."""
    if not security.host_allowed(request.headers.get("host")):
        return _error(
            421, "this server does not answer for that Host", "host", "invalid_request_error"
        )
    if request.url.path not in open_paths and not security.key_ok(
        request.headers.get("authorization")
    ):
        response = _error(
            401,
            "missing or wrong API key (send 'Authorization: Bearer <key>')",
            None,
            "authentication_error",
        )
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    return None


def _counting_gate(security: Security, open_paths: set[str], metrics: Any) -> Any:
    """The HTTP middleware: the API-key and Host gate, then the request; every answer is
    counted and timed, and an unexpected exception is a JSON 500 (499 if the client left)."""

    async def count(request: Request, call_next: Any) -> Any:
        t0 = time.perf_counter()
        path = request.url.path
        endpoint = path if path in ENDPOINTS else "other"
        response = gate(request, security, open_paths)
        try:
            if response is None:
                response = await call_next(request)
        except ClientDisconnect:  # the client went away mid-body: nothing to answer
            metrics.errors.inc("client_disconnect")
            response = _error(499, "client disconnected", None, "client_disconnect")
        except Exception as exc:  # answered as JSON; the connection stays usable
            if await request.is_disconnected():
                metrics.errors.inc("client_disconnect")
                response = _error(499, "client disconnected", None, "client_disconnect")
            else:
                log.exception("internal error on %s", path)
                metrics.errors.inc("internal")
                message = f"internal error: {type(exc).__name__}: {redact(str(exc))}"
                response = _error(500, message, None, "internal_error")
        metrics.requests.inc(endpoint, str(response.status_code))
        metrics.request_latency.observe(time.perf_counter() - t0, endpoint)
        if response.status_code >= 400:
            metrics.errors.inc(f"http_{response.status_code}")
        return response

    return count


def _add_routes(app: FastAPI, api: Api, service: TranslationService) -> None:
    """The endpoints and the handlers that turn request errors into OpenAI-shaped answers."""
    metrics = service.metrics

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

    @app.get("/v1/models")
    async def models() -> Any:
        return api.list_models()

    @app.get("/health")
    async def health() -> Any:
        try:
            out = service.health()
            breaker = getattr(service.hybrid.large, "breaker", None)
            if breaker is not None:
                out["large_breaker"] = breaker.to_dict()
            return out
        except Exception as exc:  # e.g. a damaged shared budget store: say so, do not crash
            log.error("health check failed: %s", exc)
            return _error(503, f"unhealthy: {type(exc).__name__}: {exc}", None, "unavailable")

    @app.get("/metrics")
    async def prometheus() -> Any:
        return PlainTextResponse(
            metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )


def create_app(
    service: TranslationService,
    *,
    close_on_shutdown: bool = True,
    security: Security | None = None,
    limits: Limits | None = None,
) -> FastAPI:
    """The ASGI app; ``service`` is closed (batcher drained, log flushed) on shutdown.

    ``security`` (default: none) sets API keys and the Host allow-list; ``limits`` (default:
    the service's text limits and a 1 MB body) the request limits.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if close_on_shutdown:
            service.close()

    security = security or Security()
    limits = limits or Limits(max_chars=service.max_chars, max_items=service.max_items)
    app = FastAPI(title="RouteLMT", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service
    api = Api(service, limits)
    metrics = service.metrics
    open_paths = {"/health"} | (set() if security.metrics_need_key else {"/metrics"})
    open_paths |= DASHBOARD_PATHS  # the dashboard checks the key itself (Basic or Bearer)

    app.middleware("http")(_counting_gate(security, open_paths, metrics))
    _add_routes(app, api, service)
    add_dashboard_routes(app, service, security)
    return app


ENDPOINTS = ("/v1/translate", "/v1/chat/completions", "/v1/models", "/health", "/metrics")
ALIAS = "routelmt"  # the model name that means: the router and the budget decide
