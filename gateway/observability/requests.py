"""One log line and one metric sample per HTTP request, and the `X-Request-ID` that ties them.

A pure ASGI middleware (BaseHTTPMiddleware would add a task and a body copy per request).
It runs outermost, so the duration covers everything the gateway does. What it writes is
chosen to be safe: the route *template* and its name, never the path or the query string
(`Patient?identifier=...|MGH-...`), never headers or bodies. The principal's client id
reaches it through the request state that `identified` fills once authentication succeeded.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.access.principal import Principal
from gateway.observability import metrics
from gateway.observability.logs import write_line

log = logging.getLogger("gateway.request")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
_CHALLENGE_ERROR = re.compile(r'error="([a-z_]+)"')
CLIENT_ID = "client_id"
"""Key of the principal's client id in the ASGI scope's `state`."""


def identified(authenticate: Callable[[Request], Awaitable[Principal]]) -> Callable[[Request], Awaitable[Principal]]:
    """The app's authenticator, also leaving the client id where ObserveRequests reads it."""

    async def authenticated(request: Request) -> Principal:
        principal = await authenticate(request)
        request.scope.setdefault("state", {})[CLIENT_ID] = principal.client_id
        return principal

    return authenticated


_PROCESS = os.urandom(8).hex()
_SERIAL = itertools.count(1)


def _request_id(scope: Scope) -> str:
    """The caller's X-Request-ID when it is a plausible id, else a new one (never echo arbitrary bytes):
    this process's random 64-bit prefix and a serial number, unique across workers and restarts. Not a
    secret, so no system call for random bytes on every request (`os.urandom` was 2% of a read)."""
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            given = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(given):
                return given
            break
    return f"{_PROCESS}{next(_SERIAL):016x}"


def _auth_failure(status: int, challenge: str | None, interaction: str) -> str | None:
    """Why a request was refused, from what the response says (RFC 6750 challenge, status)."""
    if status == 401:
        if interaction.startswith("auth-"):
            return "client_authentication"
        found = _CHALLENGE_ERROR.search(challenge or "")
        return found.group(1) if found else "missing_token"
    if status == 403:
        return "forbidden"
    return None


class ObserveRequests:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        state = scope.setdefault("state", {})
        start = time.perf_counter()
        answer: dict[str, Any] = {"status": 500, "challenge": None}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
                answer["status"] = message["status"]
                if message["status"] == 401:
                    answer["challenge"] = Headers(raw=message["headers"]).get("www-authenticate")
            await send(message)

        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(scope, state, request_id, answer["status"], answer["challenge"], time.perf_counter() - start)
        # Unbound only on success: an unhandled error is logged by Starlette's outermost middleware,
        # outside this one, and that line needs the id too (each request runs in its own task).
        structlog.contextvars.reset_contextvars(**bound)

    @staticmethod
    def _record(scope: Scope, state: dict[str, Any], request_id: str, status: int, challenge: str | None,
                seconds: float) -> None:
        route = scope.get("route")
        interaction = getattr(route, "name", None) or "unmatched"
        metrics.request(interaction, status, seconds)
        if reason := _auth_failure(status, challenge, interaction):
            metrics.auth_failure(reason)
        type_ = scope.get("path_params", {}).get("type")
        write_line(log, "request", {
            "method": scope["method"], "interaction": interaction, "route": getattr(route, "path_format", None),
            "type": type_ if type_ and _RESOURCE_TYPE.fullmatch(type_) else None, "status": status,
            "duration_ms": round(seconds * 1000, 2), "client_id": state.get(CLIENT_ID), "request_id": request_id})
