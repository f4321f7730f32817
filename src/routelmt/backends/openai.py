"""Any OpenAI-compatible chat endpoint as a translator (vLLM, TGI, llama.cpp server, an API).

In production the large model lives behind such an endpoint. Every failure mode a router must
survive -- the endpoint down, slow, or answering garbage (a non-JSON body, no choices, empty or
non-string content) -- raises ``BackendError`` naming the segment, so the hybrid layer can fall
back to the small translation instead of returning junk.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from routelmt.backends.base import BACKENDS, Translator
from routelmt.errors import BackendError, ConfigError, MissingDependencyError
from routelmt.languages import language_name, parse_direction
from routelmt.records import Segment

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "Translate the user's text from {source} to {target}. "
    "Reply with the translation only, without notes or quotes."
)
API_KEY_ENV = "ROUTELMT_OPENAI_API_KEY"


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


@BACKENDS.register("openai")
class OpenAITranslator(Translator):
    """Translates one segment per chat-completion call; a batch runs ``concurrency`` calls at once.

    ``timeout`` bounds each call in total (connect, unless ``connect_timeout`` is set, and the
    whole answer, however slowly it trickles in, retries included);
    ``max_retries`` retries connection errors and 5xx answers only, never a garbage answer.
    ``send_language_fields`` also sends ``source_lang``/``target_lang`` in the body (RouteLMT's
    own service reads them; strict APIs such as OpenAI's reject unknown fields, so off by
    default -- the system prompt carries the languages either way).
    """

    def __init__(
        self,
        spec: str | None = None,
        *,
        base_url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float | None = None,
        max_retries: int = 0,
        concurrency: int = 8,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        system_prompt: str = SYSTEM_PROMPT,
        send_language_fields: bool = False,
        extra_body: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        try:
            import httpx
        except ImportError:  # pragma: no cover - httpx ships with the serve extra
            raise MissingDependencyError(
                "the openai backend needs httpx: pip install 'routelmt[serve]'"
            ) from None
        if spec is not None:
            if base_url is not None or model is not None:
                raise ConfigError("openai backend: give spec= or base_url=/model=, not both")
            base_url, model = parse_spec(spec)
        if not base_url or not model:
            raise ConfigError("openai backend: base_url and model are required")
        for key, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
            if value is not None and (isinstance(value, bool) or not float(value) > 0):
                raise ConfigError(f"openai backend: {key} must be a positive number, got {value!r}")
        if int(concurrency) < 1 or int(max_retries) < 0:
            raise ConfigError("openai backend: concurrency must be >= 1 and max_retries >= 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = name or model
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.concurrency = int(concurrency)
        self.temperature = float(temperature)
        self.max_tokens = max_tokens
        self.system_prompt = system_prompt
        self.send_language_fields = bool(send_language_fields)
        self.extra_body = dict(extra_body or {})
        key = api_key or os.environ.get(API_KEY_ENV) or os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(self.timeout, connect=connect_timeout or min(self.timeout, 5.0)),
            limits=httpx.Limits(max_connections=max(64, self.concurrency)),
        )
        self._pool: ThreadPoolExecutor | None = None

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
        """One call; ``timeout`` bounds it in total (a server that trickles bytes times out)."""
        import httpx

        url = f"{self.base_url}/chat/completions"
        where = f"openai backend '{self.name}' ({url}), segment {segment.id!r}"
        body = self.request_body(segment)
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            try:
                status, data = self._post(url, body, deadline)
            except httpx.TimeoutException as exc:
                error = BackendError(f"{where}: timed out ({type(exc).__name__})")
            except httpx.HTTPError as exc:
                error = BackendError(f"{where}: unreachable ({type(exc).__name__}: {exc})")
            else:
                if status < 500 or attempt >= self.max_retries:
                    return self._parse(status, data, where)
                error = BackendError(f"{where}: HTTP {status}")
            if attempt >= self.max_retries or time.monotonic() >= deadline:
                raise error
            attempt += 1

    def _post(self, url: str, body: dict[str, Any], deadline: float) -> tuple[int, bytes]:
        import httpx

        with self._client.stream("POST", url, json=body) as response:
            chunks = []
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("the answer did not arrive within the timeout")
            return response.status_code, b"".join(chunks)

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
        self._client.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
