"""The one HTTP client to the EHR: pooled connections, a deadline per call, retries with
backoff and jitter for idempotent GETs, the circuit breaker, and the EHR's access token.

Every figure the client waits for is bounded by `timeout` (GATEWAY_EHR_TIMEOUT): retries
spend the same budget, so a client of the gateway gets its 502/504 within that time.
Only GETs are retried, and only on 5xx or a failed connection: a read timeout is not
retried, the budget is gone.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from gateway.ehr import failures
from gateway.ehr.auth import BackendAuth
from gateway.ehr.breaker import BreakerOpen, CircuitBreaker
from gateway.ehr.config import EhrConfig
from gateway.fhir.errors import FhirError
from gateway.observability import metrics

FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True, slots=True)
class Upstream:
    """An answer of the EHR: 200 with a JSON object, or 304 (`body` None) to a revalidation."""

    status: int
    body: dict[str, Any] | None
    etag: str | None


class EhrClient:
    def __init__(self, config: EhrConfig, breaker: CircuitBreaker, http: httpx.AsyncClient | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 jitter: Callable[[], float] = random.random) -> None:
        self.config = config
        self.base = config.base_url
        self.breaker = breaker
        limits = httpx.Limits(max_connections=config.max_connections,
                              max_keepalive_connections=config.max_connections)
        self.http = http or httpx.AsyncClient(limits=limits, headers={"Accept": FHIR_JSON})
        self.auth: BackendAuth | None = None
        self._sleep = sleep
        self._jitter = jitter

    async def aclose(self) -> None:
        await self.http.aclose()

    def url(self, ref: str) -> str:
        """The absolute URL of `ref` (relative to the EHR base, or absolute under it). Anything else is
        refused: a URL the gateway fetches never comes from outside the EHR's own base."""
        if ref.startswith(self.base + "/") or ref == self.base:
            return ref
        if "://" in ref or ref.startswith("/"):
            raise failures.garbage("a link points outside the EHR's FHIR base")
        return f"{self.base}/{ref}"

    async def get(self, ref: str, params: list[tuple[str, str]] | None = None, etag: str | None = None,
                  authed: bool = True) -> Upstream:
        """GET a FHIR JSON answer; `etag` asks for a 304 when the EHR's copy has not changed."""
        try:
            probe = await self.breaker.enter()
        except BreakerOpen as exc:
            raise failures.circuit_open(exc.retry_after) from exc
        started = time.perf_counter()
        try:
            response = await self._authorised_get(self.url(ref), params, etag, authed)
        except failures.UpstreamFailure:
            metrics.upstream_latency("get", "failure", time.perf_counter() - started)
            await self.breaker.failed(probe)
            raise
        except FhirError:
            metrics.upstream_latency("get", "refused", time.perf_counter() - started)
            await self.breaker.succeeded(probe)  # the EHR answered, if not usefully: it is up
            raise
        metrics.upstream_latency("get", str(response.status_code), time.perf_counter() - started)
        await self.breaker.succeeded(probe)
        return _answer(response)

    async def post_form(self, url: str, form: dict[str, str]) -> httpx.Response:
        """A POST (the token request): not idempotent, so never retried."""
        return await self._send("POST", url, attempts=1, data=form)

    async def _authorised_get(self, url: str, params: list[tuple[str, str]] | None, etag: str | None,
                              authed: bool) -> httpx.Response:
        headers = {"If-None-Match": etag} if etag else {}
        token = await self.auth.token() if authed and self.auth else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        params = params or None  # httpx would replace the query of a next link with an empty one
        response = await self._send("GET", url, attempts=self.config.retries + 1, params=params, headers=headers)
        if response.status_code == 401 and token and self.auth:
            self.auth.invalidate(token)
            headers["Authorization"] = f"Bearer {await self.auth.token()}"
            response = await self._send("GET", url, attempts=self.config.retries + 1, params=params, headers=headers)
            if response.status_code == 401:
                raise failures.refused_credentials()
        return response

    async def _send(self, method: str, url: str, attempts: int, **kwargs: Any) -> httpx.Response:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.timeout
        failure: failures.UpstreamFailure = failures.unreachable("no attempt made")
        for attempt in range(attempts):
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise failures.timed_out(self.config.timeout)
            timeout = httpx.Timeout(remaining, connect=min(self.config.connect_timeout, remaining))
            try:
                response = await self.http.request(method, url, timeout=timeout, **kwargs)
            except httpx.ConnectTimeout:
                failure = failures.timed_out(self.config.timeout)
            except httpx.TimeoutException as exc:
                raise failures.timed_out(self.config.timeout) from exc
            except httpx.TransportError as exc:
                failure = failures.unreachable(type(exc).__name__)
            else:
                if response.status_code < 500:
                    return response
                failure = failures.bad_gateway(f"status {response.status_code}")
            if attempt + 1 < attempts:
                await self._sleep(min(self._jitter() * self.config.backoff * 2 ** attempt,
                                      max(deadline - loop.time(), 0.0)))
        raise failure


def _answer(response: httpx.Response) -> Upstream:
    status = response.status_code
    etag = response.headers.get("etag")
    if status == 304:
        return Upstream(304, None, etag)
    if status == 429:
        raise failures.throttled(response.headers.get("retry-after"))
    if status >= 400:
        raise failures.client_error(status)
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise failures.garbage("not JSON") from exc
    if not isinstance(body, dict):
        raise failures.garbage("not a JSON object")
    return Upstream(status, body, etag)
