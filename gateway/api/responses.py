"""The functions that write FHIR responses — the only ones, so every resource that leaves
passes the egress gate (`Gate.disclose`) here and nowhere else can forget it."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import orjson
from starlette.responses import Response

from gateway.api.context import Ctx
from gateway.fhir.bundle import Entry, bundle_bytes
from gateway.fhir.errors import FhirError, Issue, operation_outcome
from gateway.fhir.instant import now_us, to_http_date, to_instant
from gateway.fhir.negotiation import FHIR_JSON
from gateway.store import StoredResource
from gateway.store.resources import new_id


def fhir_response(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, headers=headers, media_type=FHIR_JSON)


def outcome_response(error: FhirError) -> Response:
    return fhir_response(orjson.dumps(operation_outcome(error.issues)), error.status, error.headers)


def information(text: str) -> bytes:
    return orjson.dumps(operation_outcome([Issue("information", "informational", text)]))


def version_headers(stored: StoredResource) -> dict[str, str]:
    return {"ETag": f'W/"{stored.version}"', "Last-Modified": to_http_date(stored.ts)}


async def disclosed(ctx: Ctx, stored: StoredResource) -> bytes | None:
    body = await ctx.gate.disclose(ctx.principal, stored)
    if body is not None:
        ctx.released.append(f"{stored.type}/{stored.id}")
    return body


def not_found(type_: str, id_: str) -> FhirError:
    return FhirError.of(404, "not-found", f"{type_}/{id_} is not known")


async def resource_response(ctx: Ctx, stored: StoredResource, status: int = 200, *, created: bool = False,
                            honour_prefer: bool = False) -> Response:
    """One resource. A resource the principal may not see answers 404, never 403: its
    existence is not disclosed either."""
    body = await disclosed(ctx, stored)
    if body is None:
        raise not_found(stored.type, stored.id)
    headers = version_headers(stored)
    location = f"{_url(ctx, stored)}/_history/{stored.version}"
    headers["Content-Location"] = location
    if created:
        headers["Location"] = location
    if honour_prefer and ctx.prefer.return_ == "minimal":
        return Response(status_code=status, headers=headers)
    if honour_prefer and ctx.prefer.return_ == "OperationOutcome":
        verb = "created" if created else "updated"
        return fhir_response(information(f"{stored.type}/{stored.id} {verb}, version {stored.version}"), status,
                             headers)
    return fhir_response(body, status, headers)


async def entries_of(ctx: Ctx, items: Iterable[tuple[StoredResource, str | None]]) -> list[Entry]:
    """Bundle entries for stored resources (with their search mode), each passed through the gate;
    what may not leave is left out."""
    pairs = list(items)
    bodies = await ctx.gate.disclose_many(ctx.principal, [stored for stored, _ in pairs])
    ctx.released.extend(f"{s.type}/{s.id}" for (s, _), body in zip(pairs, bodies, strict=True) if body is not None)
    return [Entry(_url(ctx, stored), body, mode) for (stored, mode), body in zip(pairs, bodies, strict=True)
            if body is not None]


def _url(ctx: Ctx, stored: StoredResource) -> str:
    """The resource's URL as the principal knows it (its pseudonym of a subject, if it has those)."""
    return f"{ctx.base}/{stored.type}/{ctx.names.public_id(stored.type, stored.id)}"


async def history_entries(ctx: Ctx, versions: Iterable[StoredResource]) -> list[Entry]:
    """History entries; a deleted version carries no resource but is shown only to whoever may
    see the resource's other versions."""
    items = list(versions)
    bodies = await ctx.gate.disclose_many(ctx.principal, [_alive(s) for s in items])
    ctx.released.extend(f"{s.type}/{s.id}/_history/{s.version}" for s, b in zip(items, bodies, strict=True) if b)
    out = []
    for stored, body in zip(items, bodies, strict=True):
        if body is None:
            continue
        url = _url(ctx, stored)
        request = {"method": stored.method, "url": url.removeprefix(f"{ctx.base}/") if stored.method != "POST"
                   else stored.type}
        response = {"status": "410 Gone" if stored.deleted else ("201 Created" if stored.version == 1 else "200 OK"),
                    "etag": f'W/"{stored.version}"', "lastModified": to_instant(stored.ts)}
        out.append(Entry(url, None if stored.deleted else body, None, request, response))
    return out


def _alive(stored: StoredResource) -> StoredResource:
    """A deleted version judged as the resource it deleted (same type and compartment)."""
    if not stored.deleted:
        return stored
    return StoredResource(stored.type, stored.id, stored.version, stored.ts, False, stored.compartment,
                          orjson.dumps({"resourceType": stored.type, "id": stored.id}), stored.method)


def bundle_response(bundle_type: str, entries: list[Entry], *, total: int | None = None,
                    links: list[tuple[str, str]] | None = None, status: int = 200) -> Response:
    body = bundle_bytes(bundle_type, entries, total=total, links=links, bundle_id=new_id(),
                        timestamp=to_instant(now_us()))
    return fhir_response(body, status)


async def searchset_bytes(ctx: Ctx, matches: list[StoredResource], included: list[StoredResource], *,
                    total: int | None, links: list[tuple[str, str]],
                    shape: Callable[[bytes], bytes] | None = None, outcome: list[Issue] | None = None) -> bytes:
    """A searchset Bundle: matches (search.mode match) and includes (include) through the gate, then
    `shape` (`_summary`/`_elements`) applied to the bytes the gate let out; ignored parameters go in an
    OperationOutcome entry (search.mode outcome). Links and diagnostics repeat the request's
    parameters, in the principal's own words (`ctx.names`)."""
    entries = await entries_of(ctx, [*((m, "match") for m in matches), *((i, "include") for i in included)])
    if shape is not None:
        for entry in entries:
            if entry.resource is not None:
                entry.resource = shape(entry.resource)
    if outcome:
        entries.insert(0, Entry(None, orjson.dumps(operation_outcome(ctx.names.issues(outcome))), "outcome"))
    return bundle_bytes("searchset", entries, total=total, links=[(rel, ctx.names.link(url)) for rel, url in links],
                        bundle_id=new_id(), timestamp=to_instant(now_us()))
