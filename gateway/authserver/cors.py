"""CORS for browser-based SMART apps: origins of the registered clients' redirect URIs.

Clients are registered at run time (by the CLI, possibly in another process), so the
allow-list is read from the database and refreshed every `REFRESH` seconds rather than
fixed when the app starts. Preflights allow `Authorization`, so apps on their own origin
can call the token endpoint, discovery and the FHIR API.
"""

from __future__ import annotations

import time

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

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
        if scope["type"] == "http" and any(name == b"origin" for name, _ in scope["headers"]):
            await self._refresh(scope)
        await super().__call__(scope, receive, send)

    async def _refresh(self, scope: Scope) -> None:
        auth = getattr(scope["app"].state, "auth", None)
        if auth is None or time.monotonic() - self._loaded_at < REFRESH:
            return
        self._origins = frozenset(await auth.server.registry.redirect_origins())
        self._loaded_at = time.monotonic()

    def is_allowed_origin(self, origin: str) -> bool:
        return origin in self._origins
