"""CORS for browser-based SMART apps: origins of the registered clients' redirect URIs.

Clients are registered at run time (by the CLI, possibly in another process), so the
allow-list is read from the database and refreshed every `REFRESH` seconds rather than
fixed when the app starts. Preflights allow `Authorization`, so apps on their own origin
can call the token endpoint, discovery and the FHIR API.
"""

from __future__ import annotations

import time

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REFRESH = 30.0


class RegisteredOriginsCORS(CORSMiddleware):
    def __init__(self, app: ASGIApp) -> None:
        super().__init__(
            app, allow_origins=(), allow_methods=("GET", "POST", "PUT", "DELETE", "OPTIONS"),
            allow_headers=("Authorization", "Content-Type", "Accept", "Prefer", "If-Match", "If-None-Match",
                           "If-None-Exist", "X-Request-ID"),
            expose_headers=("Location", "Content-Location", "ETag", "Last-Modified", "WWW-Authenticate"),
            max_age=600,
        )
        self._origins: frozenset[str] = frozenset()
        self._loaded_at = float("-inf")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif any(name == b"origin" for name, _ in scope["headers"]):
            await self._refresh(scope)
            await super().__call__(scope, receive, send)
        else:
            await self.app(scope, receive, _vary_origin(send))

    async def _refresh(self, scope: Scope) -> None:
        auth = getattr(scope["app"].state, "auth", None)
        if auth is None or time.monotonic() - self._loaded_at < REFRESH:
            return
        self._origins = frozenset(await auth.server.registry.redirect_origins())
        self._loaded_at = time.monotonic()

    def is_allowed_origin(self, origin: str) -> bool:
        return origin in self._origins


def _vary_origin(send: Send) -> Send:
    """A request without `Origin` (servers, wrk, curl): no CORS headers, only `Vary: Origin` so a
    shared cache keeps it apart from a browser's answer — Starlette's CORS wrapper would parse the
    request and response headers of every such request to add the same line. A second `Vary`
    field line is equivalent to a comma-joined one (RFC 9110 section 5.3)."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), (b"vary", b"Origin")]
        await send(message)

    return sending
