"""Limits that protect the gateway from one client: request body size (413) on every route,
and a per-client request rate (429 with Retry-After).

The body limit is an ASGI middleware around the receive channel, so it holds for every
route that reads a body — FHIR JSON, transaction Bundles, OAuth forms, `_search` forms —
whether or not the handler remembered to check. The rate limit runs right after
authentication (it needs the client id): a token bucket of `GATEWAY_RATE_LIMIT` requests/s
with a burst of twice that, in Redis so every instance draws from the same bucket, in this
process's memory without Redis or while Redis is down (`Cache.resilient`).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.access.principal import Principal
from gateway.cache import Cache
from gateway.fhir.errors import FhirError
from gateway.observability import metrics

Authenticate = Callable[[Request], Awaitable[Principal]]


_BODY_HEADERS = (b"content-length", b"transfer-encoding")


def _without_body(scope: Scope) -> bool:
    """An HTTP/1.x request with neither Content-Length nor Transfer-Encoding has no body (RFC 9112
    section 6.3), so there is nothing to limit (HTTP/2 frames a body without either header)."""
    return scope.get("http_version", "1.1").startswith("1") and not any(
        name in _BODY_HEADERS for name, _ in scope["headers"])


def _too_large(limit: int) -> FhirError:
    return FhirError.of(413, "too-costly", f"The request body exceeds the limit of {limit} bytes "
                        "(GATEWAY_MAX_BODY_BYTES); split it into smaller requests")


class BodySizeLimit:
    """Refuses a body larger than `limit` bytes as soon as its declared length or the bytes read so far say so."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _without_body(scope):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        received = int(declared) if declared.isdigit() else 0

        async def limited() -> Message:
            nonlocal received
            if received > self.limit:
                raise _too_large(self.limit)
            message = await receive()
            if message["type"] == "http.request" and not declared.isdigit():
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _too_large(self.limit)
            return message

        await self.app(scope, limited, send)


def rate_limited(authenticate: Authenticate, cache: Cache, rate: float) -> Authenticate:
    """`authenticate`, then one token from the client's bucket; 429 when it is empty. rate <= 0: no limit."""
    if rate <= 0:
        return authenticate
    burst = 2 * rate

    async def limited(request: Request) -> Principal:
        principal = await authenticate(request)
        wait = await cache.take(f"rate:{principal.client_id}", rate, burst)
        if wait > 0:
            metrics.rate_limited()
            retry = max(1, math.ceil(wait))
            raise FhirError.of(429, "throttled", f"Too many requests from client {principal.client_id}: the limit is "
                               f"{rate:g} requests/s (bursts of {burst:g}); retry after {retry} s",
                               headers={"Retry-After": str(retry)})
        return principal

    return limited
