"""Bundles assembled around stored bytes: entries embed resources as `orjson.Fragment`,
so a page of 50 resources is serialised without parsing any of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(slots=True)
class Entry:
    """One Bundle.entry; `resource` is stored JSON bytes (or None for entries without one)."""

    full_url: str | None = None
    resource: bytes | None = None
    search_mode: str | None = None
    request: dict[str, Any] | None = None
    response: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.full_url:
            out["fullUrl"] = self.full_url
        if self.resource is not None:
            out["resource"] = orjson.Fragment(self.resource)
        if self.search_mode:
            out["search"] = {"mode": self.search_mode}
        if self.request:
            out["request"] = self.request
        if self.response:
            out["response"] = self.response
        out.update(self.extra)
        return out


def bundle_bytes(bundle_type: str, entries: list[Entry], *, total: int | None = None,
                 links: list[tuple[str, str]] | None = None, bundle_id: str | None = None,
                 timestamp: str | None = None) -> bytes:
    body: dict[str, Any] = {"resourceType": "Bundle"}
    if bundle_id:
        body["id"] = bundle_id
    body["meta"] = {"lastUpdated": timestamp} if timestamp else {}
    if not body["meta"]:
        del body["meta"]
    body["type"] = bundle_type
    if timestamp:
        body["timestamp"] = timestamp
    if total is not None:
        body["total"] = total
    if links:
        body["link"] = [{"relation": rel, "url": url} for rel, url in links]
    body["entry"] = [e.to_json() for e in entries]
    return orjson.dumps(body)
