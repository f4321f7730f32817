"""Remove credentials from text that may reach a log, an error message or a printed config.

A large endpoint is often given as ``openai:https://user:token@host/v1#model``; its URL then
appears in every error about that endpoint. ``redact`` masks the user-info part of any URL and
the value of bearer tokens and ``api_key``-like settings, so the text is safe to show.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MASK", "redact", "redact_config"]

MASK = "***"

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"]+@")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\",]+")
_KEY_VALUE = re.compile(
    r"(?i)((?:api[_-]?key|token|password|secret)[\"']?\s*[=:]\s*[\"']?)[^\s'\",&}]+"
)
_SECRET_KEYS = re.compile(r"(?i)(api[_-]?keys?|token|password|secret)")


def redact(text: str) -> str:
    """``http://user:pass@h/v1`` -> ``http://***@h/v1``; bearer tokens and key=value masked."""
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    return _KEY_VALUE.sub(lambda m: m.group(1) + MASK, text)


def redact_config(value: Any, key: str = "") -> Any:
    """A copy of a config tree with secret-named keys masked and URLs in strings redacted."""
    if isinstance(value, dict):
        return {k: redact_config(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        if _SECRET_KEYS.search(key) and value:
            return [MASK] * len(value)
        return [redact_config(v) for v in value]
    if _SECRET_KEYS.search(key) and value not in (None, "", False, True):
        return MASK
    if isinstance(value, str):
        return redact(value)
    return value
