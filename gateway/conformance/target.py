"""The server under test: its base URL, an HTTP client that records every exchange, and what it declares.

Why one object: the generated cases ("every declared interaction and search parameter
really works") and the `needs:` of written cases both ask the same questions of the
target's CapabilityStatement and SMART discovery, fetched once per run.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import httpx

from gateway.conformance.auth import smart_configuration
from gateway.conformance.model import Exchange

FHIR_JSON = "application/fhir+json"
_EXCERPT = 4000
_SECRET_HEADERS = {"authorization", "cookie", "set-cookie"}


def excerpt(data: bytes | str, limit: int = _EXCERPT) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return text if len(text) <= limit else f"{text[:limit]}\n... ({len(text) - limit} more characters)"


def _shown(headers: httpx.Headers) -> dict[str, str]:
    return {k: ("<redacted>" if k.lower() in _SECRET_HEADERS else v) for k, v in headers.items()}


class Target:
    def __init__(self, base: str, http: httpx.Client, token: str | None = None) -> None:
        self.base = base.rstrip("/")
        self.http = http
        self.token = token

    def url(self, path: str) -> str:
        """Absolute URLs (manifest links, Location headers) stay as they are; paths hang off the FHIR base."""
        if path.startswith(("http://", "https://")):
            return path
        return f"{self.base}/{path.lstrip('/')}" if path else self.base

    def send(self, method: str, path: str, *, headers: dict[str, str] | None = None,
             params: list[tuple[str, str]] | None = None, content: bytes | None = None,
             form: dict[str, str] | None = None, auth: bool | str = True) -> tuple[httpx.Response | None, Exchange]:
        """One request, with the run's token unless `auth` is False or another token; transport errors
        come back as an Exchange with `error`, never as an exception."""
        token = auth if isinstance(auth, str) else (self.token if auth else None)
        if token:
            headers = {**(headers or {}), "Authorization": f"Bearer {token}"}
        request = self.http.build_request(method, self.url(path), headers=headers, params=params, content=content,
                                          data=form)
        exchange = Exchange(method=method, url=str(request.url), request_headers=_shown(request.headers),
                            request_body=excerpt(request.content) if request.content else "")
        try:
            response = self.http.send(request)
        except httpx.HTTPError as exc:
            exchange.error = f"{type(exc).__name__}: {exc}"
            return None, exchange
        exchange.status = response.status_code
        exchange.response_headers = _shown(response.headers)
        exchange.response_body = excerpt(response.content)
        return response, exchange

    def get_json(self, path: str, params: list[tuple[str, str]] | None = None) -> dict[str, Any] | None:
        """A GET whose JSON body the runner needs for itself (samples, definitions); None on any failure."""
        response, _ = self.send("GET", path, headers={"Accept": FHIR_JSON}, params=params)
        if response is None or response.status_code != 200:
            return None
        try:
            data = response.json()
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    @cached_property
    def capability(self) -> dict[str, Any] | None:
        data = self.get_json("metadata")
        return data if data and data.get("resourceType") == "CapabilityStatement" else None

    @cached_property
    def smart(self) -> dict[str, Any] | None:
        return smart_configuration(self.http, self.base)

    @property
    def rest(self) -> dict[str, Any]:
        cs = self.capability or {}
        servers = [r for r in cs.get("rest") or [] if r.get("mode") == "server"]
        return servers[0] if servers else {}

    @property
    def resources(self) -> list[dict[str, Any]]:
        return [r for r in self.rest.get("resource") or [] if r.get("type")]

    def resource(self, type_: str) -> dict[str, Any]:
        return next((r for r in self.resources if r["type"] == type_), {})

    def interactions(self, type_: str) -> set[str]:
        return {i.get("code") for i in self.resource(type_).get("interaction") or []}

    def declares(self, type_: str, interaction: str) -> bool:
        return interaction in self.interactions(type_)

    @property
    def system_interactions(self) -> set[str]:
        return {i.get("code") for i in self.rest.get("interaction") or []}

    def operations(self, type_: str | None = None) -> set[str]:
        """Operation names (without `$`) declared at system level, or on `type_`."""
        entries = self.rest.get("operation") if type_ is None else self.resource(type_).get("operation")
        return {str(o.get("name", "")).lstrip("$") for o in entries or []}

    @property
    def declares_smart(self) -> bool:
        """The CapabilityStatement's security names SMART (service coding or the oauth-uris extension)."""
        security = self.rest.get("security") or {}
        codes = {c.get("code") for s in security.get("service") or [] for c in s.get("coding") or []}
        uris = [e for e in security.get("extension") or [] if str(e.get("url", "")).endswith("oauth-uris")]
        return "SMART-on-FHIR" in codes or bool(uris)
