"""Any OpenAI-compatible chat endpoint as a translator (vLLM, TGI, llama.cpp server, an API),
with a fallback chain: several endpoints tried in order, each with retries.

In production the large model lives behind such an endpoint. Every failure mode a router must
survive -- the endpoint down, slow, rate-limited, or answering garbage (a non-JSON body, no
choices, empty or non-string content) -- moves on to the next endpoint of the chain, and when
the last one fails raises ``BackendError`` naming the segment and every endpoint's error, so the
hybrid layer falls back to the small model instead of returning junk.

Transport and error classification come from the ``openai`` client. Its own retry loop is off
(``max_retries=0`` on the client) because it sleeps up to two minutes on a ``Retry-After``
without knowing our per-endpoint deadline or that another endpoint could answer now; the loop
here honours ``Retry-After`` (seconds, or ``retry-after-ms``) when the wait fits in the
endpoint's remaining time, and otherwise moves on at once.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from routelmt.backends.base import BACKENDS, Translator
from routelmt.errors import BackendError, ConfigError, MissingDependencyError
from routelmt.languages import language_name, parse_direction
from routelmt.records import Segment
from routelmt.redact import redact

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "Translate the user's text from {source} to {target}. "
    "Reply with the translation only, without notes or quotes."
)
API_KEY_ENV = "ROUTELMT_OPENAI_API_KEY"
RETRY_STATUSES = frozenset({408, 409, 429})  # and every 5xx


def parse_spec(spec: str) -> tuple[str, str]:
    """``http://host:8000/v1#model-name`` -> (base URL, model)."""
    base_url, sep, model = spec.partition("#")
    if not sep or not base_url or not model:
        raise ConfigError(
            f"openai backend spec '{spec}': expected BASE_URL#MODEL, "
            "e.g. openai:http://127.0.0.1:8000/v1#Qwen2.5-72B-Instruct"
        )
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"openai backend spec '{spec}': the base URL must start with http(s)://")
    return base_url.rstrip("/"), model


@dataclass(frozen=True)
class Endpoint:
    """One link of the chain: where, which model, which key."""

    base_url: str
    model: str
    api_key: str | None = None

    @classmethod
    def parse(cls, item: object, default_key: str | None) -> Endpoint:
        """``"URL#MODEL"`` or ``{"base_url", "model", "api_key" | "api_key_env"}``."""
        if isinstance(item, str):
            base_url, model = parse_spec(item)
            return cls(base_url, model, default_key)
        if isinstance(item, Mapping):
            unknown = set(item) - {"spec", "base_url", "model", "api_key", "api_key_env"}
            if unknown:
                raise ConfigError(
                    f"openai fallback {dict(item)!r:.80}: unknown keys {sorted(unknown)}"
                )
            if "spec" in item:
                base_url, model = parse_spec(str(item["spec"]))
            else:
                base_url, model = str(item.get("base_url") or ""), str(item.get("model") or "")
                if not base_url.startswith(("http://", "https://")) or not model:
                    raise ConfigError(
                        f"openai fallback {dict(item)!r:.80}: needs base_url (http[s]://...) "
                        "and model, or spec"
                    )
            key = item.get("api_key")
            if key is None and item.get("api_key_env"):
                key = os.environ.get(str(item["api_key_env"]))
            return cls(base_url.rstrip("/"), model, None if key is None else str(key))
        raise ConfigError(
            f"openai fallback: expected 'URL#MODEL' or a mapping, got {type(item).__name__}"
        )


class _Failure(Exception):
    """One attempt's failure: the message, whether another attempt may help, and the wait the
    endpoint asked for (``Retry-After``)."""

    def __init__(self, message: str, *, retry: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.retry_after = retry_after


def retry_after_seconds(headers: Mapping[str, str] | Any) -> float | None:
    """The wait a 429/503 asks for: ``retry-after-ms``, else ``Retry-After`` in seconds or as
    an HTTP date; None when absent or unreadable."""
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            if name == "retry-after-ms":
                continue
            try:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                return None
        return max(0.0, seconds) if seconds == seconds else None
    return None


@BACKENDS.register
class OpenAITranslator(Translator):
    """Translates one segment per chat-completion call; a batch runs ``concurrency`` calls at once.

    ``fallbacks`` lists more endpoints (``"URL#MODEL"`` or ``{base_url, model, api_key |
    api_key_env}``), tried in order when the ones before fail; after the last one the caller (the
    hybrid translator) falls back to the small model.
    ``timeout`` bounds the time spent on each endpoint in total: connect (``connect_timeout``,
    default min(timeout, 5 s)), the whole answer however slowly it trickles in, and the retries
    with their waits. ``max_retries`` retries connection errors, timeouts, 408/409/429 and 5xx
    answers (never a garbage answer) with exponential backoff from ``backoff`` seconds (doubling,
    capped at ``max_backoff``, jittered), or after the ``Retry-After`` the endpoint gives.
    ``send_language_fields`` also sends ``source_lang``/``target_lang`` in the body (RouteLMT's
    own service reads them; strict APIs such as OpenAI's reject unknown fields, so off by
    default -- the system prompt carries the languages either way).
    """

    kind = "openai"

    def __init__(
        self,
        spec: str | None = None,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        fallbacks: Sequence[str | Mapping[str, Any]] = (),
        timeout: float = 30.0,
        connect_timeout: float | None = None,
        max_retries: int = 2,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        concurrency: int = 8,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        system_prompt: str = SYSTEM_PROMPT,
        send_language_fields: bool = False,
        extra_body: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        try:
            import openai
        except ImportError:  # pragma: no cover - openai ships with the serve extra
            raise MissingDependencyError(
                "the openai backend needs the openai client: pip install 'routelmt[serve]'"
            ) from None
        if spec is not None:
            if base_url is not None or model is not None:
                raise ConfigError("openai backend: give spec= or base_url=/model=, not both")
            base_url, model = parse_spec(spec)
        if not base_url or not model:
            raise ConfigError("openai backend: base_url and model are required")
        for key, value in (
            ("timeout", timeout),
            ("connect_timeout", connect_timeout),
            ("backoff", backoff),
            ("max_backoff", max_backoff),
        ):
            if value is not None and (isinstance(value, bool) or not float(value) > 0):
                raise ConfigError(f"openai backend: {key} must be a positive number, got {value!r}")
        if int(concurrency) < 1 or int(max_retries) < 0:
            raise ConfigError("openai backend: concurrency must be >= 1 and max_retries >= 0")
        if isinstance(fallbacks, (str, Mapping)):
            fallbacks = [fallbacks]
        key = api_key or os.environ.get(API_KEY_ENV) or os.environ.get("OPENAI_API_KEY")
        self.endpoints = [Endpoint(base_url.rstrip("/"), model, key)]
        self.endpoints += [Endpoint.parse(item, key) for item in fallbacks]
        self.base_url = self.endpoints[0].base_url
        self.model = model
        self.name = name or model
        self.timeout = float(timeout)
        self.connect_timeout = float(connect_timeout or min(self.timeout, 5.0))
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.concurrency = int(concurrency)
        self.temperature = float(temperature)
        self.max_tokens = max_tokens
        self.system_prompt = system_prompt
        self.send_language_fields = bool(send_language_fields)
        self.extra_body = dict(extra_body or {})
        self._clients = [
            openai.OpenAI(
                base_url=e.base_url,
                # a keyless local server (vLLM without --api-key) ignores the header
                api_key=e.api_key or "unused",
                max_retries=0,  # retries are ours: see the module docstring
                timeout=openai.Timeout(self.timeout, connect=self.connect_timeout),
            )
            for e in self.endpoints
        ]
        self._stats_lock = threading.Lock()
        self._answered = [0] * len(self.endpoints)
        self._failed = [0] * len(self.endpoints)
        self._pool: ThreadPoolExecutor | None = None

    def stats(self) -> list[dict[str, Any]]:
        """Per endpoint: answers given and attempts failed (for /health and debugging)."""
        with self._stats_lock:
            return [
                {"base_url": e.base_url, "model": e.model, "answered": a, "failed": f}
                for e, a, f in zip(self.endpoints, self._answered, self._failed, strict=True)
            ]

    # -- one call ------------------------------------------------------------------------
    def request_body(self, segment: Segment) -> dict[str, Any]:
        src, tgt = parse_direction(segment.direction)
        system = self.system_prompt.format(source=language_name(src), target=language_name(tgt))
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": segment.source},
            ],
            "temperature": self.temperature,
            "stream": False,
        }
        if self.max_tokens is not None:
            body["max_tokens"] = int(self.max_tokens)
        if self.send_language_fields:
            body["source_lang"], body["target_lang"] = src, tgt
        body.update(self.extra_body)
        return body

    def translate_one(self, segment: Segment) -> str:
        """The first endpoint of the chain that answers, each tried with retries within
        ``timeout``; a ``BackendError`` naming every endpoint's error when none does."""
        body = self.request_body(segment)
        errors: list[str] = []
        for index, endpoint in enumerate(self.endpoints):
            url = f"{endpoint.base_url}/chat/completions"
            where = f"openai backend '{self.name}' ({redact(url)}), segment {segment.id!r}"
            try:
                text = self._try_endpoint(index, body, where)
            except BackendError as exc:
                errors.append(str(exc))
                if index + 1 < len(self.endpoints):
                    log.warning("%s; trying the next endpoint", exc)
                continue
            with self._stats_lock:
                self._answered[index] += 1
            return text
        if len(errors) == 1:
            raise BackendError(errors[0])
        raise BackendError(f"all {len(errors)} endpoints failed: " + " | ".join(errors))

    def _try_endpoint(self, index: int, body: dict[str, Any], where: str) -> str:
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            try:
                status, data = self._post(index, body, deadline)
            except _Failure as failure:
                with self._stats_lock:
                    self._failed[index] += 1
                error = BackendError(f"{where}: {failure}")
                if not failure.retry or attempt >= self.max_retries:
                    raise error from None
                if failure.retry_after is not None:
                    wait = failure.retry_after
                else:
                    wait = min(self.backoff * 2.0**attempt, self.max_backoff)
                    wait *= 1.0 - 0.25 * random.random()  # jitter: replicas do not retry in step
                if time.monotonic() + wait >= deadline:
                    # said without "timed out": the metrics file this under the answer's status
                    raise BackendError(f"{error}; no time left to retry in {wait:.2f} s") from None
                time.sleep(wait)
                attempt += 1
                continue
            try:
                return self._parse(status, data, where)
            except BackendError:  # a garbage answer: not retried, the next endpoint may do
                with self._stats_lock:
                    self._failed[index] += 1
                raise

    def _post(self, index: int, body: dict[str, Any], deadline: float) -> tuple[int, bytes]:
        """One attempt: (status, body bytes), or ``_Failure``. The deadline is checked while
        the answer streams in, so a server that trickles bytes cannot hold the call."""
        import openai

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Failure("timed out (no time left)", retry=False)
        known = ("model", "messages", "temperature", "max_tokens")
        kwargs = {k: body[k] for k in known if k in body}
        extra = {k: v for k, v in body.items() if k not in known and k != "stream"}
        kwargs["model"] = self.endpoints[index].model
        client = self._clients[index]
        timeout = openai.Timeout(remaining, connect=min(self.connect_timeout, remaining))
        try:
            with client.chat.completions.with_streaming_response.create(
                **kwargs, extra_body=extra or None, timeout=timeout
            ) as response:
                chunks = []
                for chunk in response.iter_bytes():
                    chunks.append(chunk)
                    if time.monotonic() > deadline:
                        raise _Failure("timed out (the answer did not arrive in time)", retry=True)
                return response.status_code, b"".join(chunks)
        except openai.APITimeoutError:
            raise _Failure("timed out (APITimeoutError)", retry=True) from None
        except openai.APIStatusError as exc:
            status = exc.status_code
            retry = status in RETRY_STATUSES or status >= 500
            text = _error_text(exc)
            raise _Failure(
                f"HTTP {status}: {text[:200]!r}",
                retry=retry,
                retry_after=retry_after_seconds(exc.response.headers),
            ) from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise _Failure(f"unreachable ({type(cause).__name__}: {cause})", retry=True) from None

    @staticmethod
    def _parse(status: int, body: bytes, where: str) -> str:
        text = body.decode("utf-8", errors="replace")
        if status != 200:
            raise BackendError(f"{where}: HTTP {status}: {text[:200]!r}")
        try:
            data = json.loads(text)
        except ValueError:
            raise BackendError(f"{where}: the body is not JSON: {text[:80]!r}") from None
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise BackendError(f"{where}: malformed answer: no 'choices' list")
        message = choices[0].get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise BackendError(
                f"{where}: malformed answer: choices[0].message.content is "
                f"{type(content).__name__}, expected a string"
            )
        text = content.strip()
        if not text:
            raise BackendError(f"{where}: empty translation")
        return text

    # -- Translator ----------------------------------------------------------------------
    def translate(self, segments: Sequence[Segment]) -> list[str]:
        if len(segments) <= 1 or self.concurrency == 1:
            return [self.translate_one(s) for s in segments]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="openai")
        return list(self._pool.map(self.translate_one, segments))

    def close(self) -> None:
        for client in self._clients:
            client.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None


def _error_text(exc: Any) -> str:
    """The body of an error answer, as text (the client may or may not have read it)."""
    try:
        return exc.response.text
    except Exception:  # a streamed body that was not read
        return str(getattr(exc, "message", "") or exc)
