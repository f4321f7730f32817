"""The operator's dashboard: ``GET /dashboard`` (a page) and ``GET /dashboard/data`` (its JSON).

The page, its script and its style ship in the package (``serve/static``); nothing is fetched
from anywhere else (the Content-Security-Policy says so to the browser too). The script asks
``/dashboard/data`` (``serve.dashboard_data``) every few seconds and draws the numbers.

Behind the API key when the service has one. A browser cannot add a Bearer header to a page
it navigates to, so the dashboard also takes HTTP Basic authentication with the API key as the
password (any user name): the browser asks for it once and sends it with every refresh.
A Bearer header works as for every other endpoint.
"""

from __future__ import annotations

import base64
import binascii
import functools
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from routelmt.serve.dashboard_data import LAST_DECISIONS, dashboard_data
from routelmt.serve.security import Security

ASSETS = {
    "/dashboard": ("dashboard.html", "text/html; charset=utf-8"),
    "/dashboard/dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
    "/dashboard/dashboard.css": ("dashboard.css", "text/css; charset=utf-8"),
}
DATA_PATH = "/dashboard/data"
# the gate in serve.app leaves these to the dashboard's own key check (Basic or Bearer)
DASHBOARD_PATHS = frozenset({*ASSETS, DATA_PATH})
MAX_LAST = 500

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@functools.cache
def asset(name: str) -> bytes:
    """A file of ``serve/static`` (read once)."""
    return resources.files("routelmt.serve").joinpath("static", name).read_bytes()


def key_ok(security: Security, authorization: str | None) -> bool:
    """Bearer <key>, or Basic with the key as the password (what a browser can send)."""
    if not security.api_keys:
        return True
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return security.key_ok(authorization)
    try:
        pair = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    _, _, password = pair.partition(":")
    return bool(password) and security.key_ok(f"Bearer {password}")


def _error(status: int, message: str, param: str | None, kind: str) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return JSONResponse(body, status_code=status, headers=HEADERS)


def _refused() -> JSONResponse:
    response = _error(
        401,
        "missing or wrong API key (Basic authentication: any user name, the key as password; "
        "or 'Authorization: Bearer <key>')",
        None,
        "authentication_error",
    )
    response.headers["WWW-Authenticate"] = 'Basic realm="routelmt dashboard", charset="UTF-8"'
    return response


def _last(request: Request) -> int | JSONResponse:
    raw = request.query_params.get("last")
    if raw is None:
        return LAST_DECISIONS
    if not raw.isdigit() or not 0 <= int(raw) <= MAX_LAST:
        message = f"expected an integer from 0 to {MAX_LAST}, got {raw!r:.20}"
        return _error(400, message, "last", "invalid_request_error")
    return int(raw)


def add_dashboard_routes(app: FastAPI, service: Any, security: Security) -> None:
    """``GET /dashboard`` and its assets, and ``GET /dashboard/data``."""

    def serve_asset(request: Request) -> Response:
        if not key_ok(security, request.headers.get("authorization")):
            return _refused()
        name, media_type = ASSETS[request.url.path]
        return Response(asset(name), media_type=media_type, headers=HEADERS)

    for path in ASSETS:
        app.add_api_route(path, serve_asset, methods=["GET"], include_in_schema=False)

    @app.get(DATA_PATH, include_in_schema=False)
    def data(request: Request) -> Any:  # sync: FastAPI runs it off the event loop
        if not key_ok(security, request.headers.get("authorization")):
            return _refused()
        last = _last(request)
        if isinstance(last, JSONResponse):
            return last
        return JSONResponse(dashboard_data(service, last=last), headers=HEADERS)
