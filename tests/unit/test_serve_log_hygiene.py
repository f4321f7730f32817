"""What reaches the logs: no credential an upstream echoes, no query-string key, no line a client
forges. A real ``routelmt serve`` process, its stderr and its decision log read back."""

from __future__ import annotations

import base64
import logging

from routelmt.redact import LogHygiene, escape_controls, redact

BEARER = "sk-upstream-secret-777"
BASIC = base64.b64encode(b"admin:hunter2-basic-secret").decode()
QUERY_KEY = "query-secret-4242"


def test_redact_masks_echoed_authorization_and_query_keys():
    cases = {
        f"Authorization: Basic {BASIC}": "Authorization: ***",
        f'{{"authorization": "Bearer {BEARER}"}}': '{"authorization": "***"}',
        f"proxy said Basic {BASIC} was wrong": "proxy said Basic *** was wrong",
        f"GET /v1/translate?api_key={QUERY_KEY}&x=1": "GET /v1/translate?api_key=***&x=1",
        f"/v1/x?key={QUERY_KEY}&sig=abc&page=2": "/v1/x?key=***&sig=***&page=2",
        "a basic sentence, with basic words": "a basic sentence, with basic words",
    }
    for given, expected in cases.items():
        assert redact(given) == expected


def test_log_hygiene_escapes_client_text_and_keeps_numbers(tmp_path):
    logger = logging.getLogger("test-hygiene")
    logger.propagate = False
    handler = logging.FileHandler(tmp_path / "out.log")
    handler.addFilter(LogHygiene())
    logger.addHandler(handler)
    try:
        error = RuntimeError(f"HTTP 401: Authorization: Basic {BASIC}")
        logger.warning("large call failed for %s: %s (%d ms)", "s1\nERROR forged", error, 12)
        logger.warning("%(who)s asked", {"who": "line\r\nbreak"})
    finally:
        logger.removeHandler(handler)
        handler.close()
    lines = (tmp_path / "out.log").read_text().splitlines()
    assert lines == [
        "large call failed for s1\\nERROR forged: HTTP 401: Authorization: *** (12 ms)",
        "line\\r\\nbreak asked",
    ]
    assert escape_controls("tab\tkept\u2028") == "tab\tkept\\u2028"
