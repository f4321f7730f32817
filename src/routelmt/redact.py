"""Remove credentials from text that may reach a log, an error message or a printed config.

A large endpoint is often given as ``openai:https://user:token@host/v1#model``; its URL then
appears in every error about that endpoint, and an upstream error body may echo the request's
``Authorization`` header. ``redact`` masks the user-info part of any URL, ``Authorization``
header values, Basic and Bearer credentials, the value of ``api_key``-like settings and of
secret-looking query-string parameters, so the text is safe to show. ``LogHygiene`` applies it
(and escapes control characters, so client text cannot forge a line) to every log record.
"""

from __future__ import annotations

import logging
import numbers
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "LogHygiene", "escape_controls", "install_log_hygiene", "redact"]
__all__ += ["redact_config"]

MASK = "***"

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"]+@")
# an echoed header: ``Authorization: Basic dXNlcjpwYXNz``, ``"authorization": "Bearer x"``
_AUTH_HEADER = re.compile(r"(?i)(\b(?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,}\]]+")
# "Bearer" in any case (as before); "Basic"/"Digest" as HTTP writes them, so prose stays
_SCHEME_CREDENTIAL = re.compile(
    r"(\b(?:[Bb][Ee][Aa][Rr][Ee][Rr]|Basic|BASIC|Digest)\s+)[A-Za-z0-9+/=._~-]{4,}"
)
_KEY_VALUE = re.compile(
    r"(?i)((?:api[_-]?key|token|password|secret)[\"']?\s*[=:]\s*[\"']?)[^\s'\",&}]+"
)
# ``?key=...``, ``&sig=...``, ``&access_token=...``: any query parameter named like a secret
_QUERY_SECRET = re.compile(
    r"(?i)([?&;](?:[a-z0-9_.-]*(?:key|token|secret|password|passwd|pwd|auth|sig|signature|"
    r"credential|session)[a-z0-9_.-]*)=)[^&#\s'\"]*"
)
_SECRET_KEYS = re.compile(r"(?i)(api[_-]?keys?|token|password|secret)")
# C0 controls but tab, DEL, C1's NEL, and the Unicode line and paragraph separators
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def redact(text: str) -> str:
    """``http://user:pass@h/v1`` -> ``http://***@h/v1``; Authorization values, Basic/Bearer
    credentials, key=value secrets and secret query parameters masked."""
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + MASK, text)
    text = _SCHEME_CREDENTIAL.sub(lambda m: m.group(1) + MASK, text)
    text = _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, text)
    return _KEY_VALUE.sub(lambda m: m.group(1) + MASK, text)


def escape_controls(text: str) -> str:
    """``"a\\nb"`` -> ``"a\\\\nb"``: a line break in client text cannot start a new log line."""
    return _CONTROLS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


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


def _clean_arg(value: Any) -> Any:
    """A log argument made safe: numbers stay numbers (``%d`` still formats them), anything
    else becomes its redacted text with control characters escaped."""
    if value is None or isinstance(value, (bool, numbers.Number)):
        return value
    return escape_controls(redact(str(value)))


class LogHygiene(logging.Filter):
    """A handler filter: every record's arguments redacted and escaped, its message redacted.

    The arguments carry what came from outside (a client's id, an upstream error body, a
    request path with its query string); the message is the program's own format string, whose
    line breaks, if any, are meant. The argument structure is kept (uvicorn's access formatter
    unpacks it).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            if isinstance(record.msg, str):
                record.msg = redact(record.msg)
            else:
                record.msg = escape_controls(redact(str(record.msg)))
            if isinstance(record.args, Mapping):
                record.args = {k: _clean_arg(v) for k, v in record.args.items()}
            elif isinstance(record.args, tuple):
                record.args = tuple(_clean_arg(a) for a in record.args)
        except Exception:  # never lose a log line to its own cleaning
            record.msg, record.args = "(a log line that could not be redacted was dropped)", ()
        return True


def install_log_hygiene(*logger_names: str) -> None:
    """Add ``LogHygiene`` to every handler of the root logger and of ``logger_names`` (e.g.
    uvicorn's, which do not propagate), once each."""
    for name in ("", *logger_names):
        for handler in logging.getLogger(name or None).handlers:
            if not any(isinstance(f, LogHygiene) for f in handler.filters):
                handler.addFilter(LogHygiene())
