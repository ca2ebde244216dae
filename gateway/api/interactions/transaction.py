"""batch and transaction — https://hl7.org/fhir/R4/http.html#transaction.

A transaction is all-or-nothing: every entry runs in one store transaction, in the order
FHIR prescribes (DELETE, POST, PUT, GET), after `urn:uuid:` fullUrls of new resources are
given server ids and every reference to them rewritten. The first failing entry rolls
everything back and the answer is that entry's status with an OperationOutcome naming it.
A batch answers each entry on its own. Every resource in the answer passes the gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.body import read_json
from gateway.api.conditional import matching_ids
from gateway.api.context import Ctx, context, stored_type, writable_type
from gateway.api.interactions.create import create
from gateway.api.interactions.delete import delete
from gateway.api.interactions.search import searchset
from gateway.api.interactions.update import conditional_target, update
from gateway.api.responses import bundle_response, disclosed, not_found
from gateway.api.writing import parse_if_match
from gateway.fhir.bundle import Entry
from gateway.fhir.errors import FhirError, Issue, operation_outcome
from gateway.fhir.instant import to_instant
from gateway.fhir.references import rewrite_references
from gateway.store import StoredResource, Transaction
from gateway.store.resources import new_id

router = APIRouter()
ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}


@dataclass
class Step:
    index: int
    method: str
    type: str
    id: str | None
    vid: str | None
    query: str
    resource: Any
    request: dict[str, Any]
    full_url: str | None


def _parse(index: int, entry: Any) -> Step:
    where = f"Bundle.entry[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        raise _entry_error(index, FhirError.of(400, "required", f"{where}.request is missing"))
    request = entry["request"]
    method = str(request.get("method", "")).upper()
    if method not in ORDER or method == "PATCH":
        raise _entry_error(index, FhirError.of(400, "not-supported", f"{where}.request.method {method!r} is not "
                                                                     "supported (DELETE, POST, PUT, GET)"))
    url = str(request.get("url") or "")
    parts = urlsplit(url)
    segments = [s for s in parts.path.strip("/").split("/") if s]
    if not segments:
        raise _entry_error(index, FhirError.of(400, "required", f"{where}.request.url is missing"))
    type_ = segments[0]
    id_ = segments[1] if len(segments) > 1 else None
    vid = segments[3] if len(segments) == 4 and segments[2] == "_history" else None
    return Step(index, method, type_, id_, vid, parts.query, entry.get("resource"), request, entry.get("fullUrl"))


def _entry_error(index: int, error: FhirError) -> FhirError:
    """The entry's error, its issues pointing at the entry."""
    return FhirError(error.status, [
        Issue(i.severity, i.code, f"Bundle.entry[{index}]: {i.diagnostics}",
              (f"Bundle.entry[{index}]", *i.expression)) for i in error.issues], error.headers)


async def _result(ctx: Ctx, stored: StoredResource | None, status: int) -> Entry:
    if stored is None:
        return Entry(response={"status": STATUS_TEXT.get(status, str(status))})
    public = f"{stored.type}/{ctx.names.public_id(stored.type, stored.id)}"
    response = {"status": STATUS_TEXT.get(status, str(status)), "location": f"{public}/_history/{stored.version}",
                "etag": f'W/"{stored.version}"', "lastModified": to_instant(stored.ts)}
    body = None if ctx.prefer.return_ == "minimal" or stored.deleted else await disclosed(ctx, stored)
    return Entry(f"{ctx.base}/{public}", body, response=response)


async def _run(ctx: Ctx, tx: Transaction, step: Step, assigned: dict[int, str]) -> Entry:
    if step.method in ("GET", "HEAD"):
        return await _get(ctx, tx, step)
    writable_type(step.type)
    if_match = parse_if_match(step.request.get("ifMatch"))
    if step.method == "DELETE":
        if step.id is None:
            found = await matching_ids(ctx, step.type, step.query, "Conditional delete")
            if not found:
                return await _result(ctx, None, 204)
            step.id = found[0]
        await delete(ctx, tx, step.type, step.id, if_match)
        return await _result(ctx, None, 204)
    if step.method == "POST":
        stored, created = await create(ctx, tx, step.type, step.resource, step.request.get("ifNoneExist"),
                                       assigned.get(step.index))
        return await _result(ctx, stored, 201 if created else 200)
    target = step.id or await conditional_target(ctx, step.type, step.query, step.resource)  # PUT
    resource = {**step.resource, "id": target} if step.id is None and isinstance(step.resource, dict) \
        else step.resource
    stored, created = await update(ctx, tx, step.type, target, resource, if_match)
    return await _result(ctx, stored, 201 if created else 200)


async def _get(ctx: Ctx, tx: Transaction, step: Step) -> Entry:
    stored_type(step.type)
    if step.id is None:  # a search: the same gate, restriction and egress as GET /fhir/{type}
        body = await searchset(ctx, step.type, parse_qsl(step.query, keep_blank_values=True))
        return Entry(resource=body, response={"status": STATUS_TEXT[200]})
    interaction = "vread" if step.vid else "read"
    ctx.gate.require(ctx.principal, step.type, interaction)
    id_ = await ctx.names.subject_id(step.type, step.id)
    if step.vid:
        stored = await ctx.store.vread(step.type, id_, int(step.vid)) if step.vid.isdigit() else None
    else:
        stored = await tx.current(step.type, id_)
    if stored is None or not ctx.gate.visible(ctx.principal, stored):
        raise not_found(step.type, step.id)
    if stored.deleted:
        raise FhirError.of(410, "deleted", f"{step.type}/{step.id} was deleted")
    return await _result(ctx, stored, 200)


async def _assign_ids(ctx: Ctx, steps: list[Step]) -> tuple[dict[int, str], dict[str, str]]:
    """Server ids for POST entries (the existing one when `ifNoneExist` matches), and the
    reference rewrites their fullUrls call for."""
    assigned: dict[int, str] = {}
    rewrites: dict[str, str] = {}
    for step in steps:
        if step.method == "POST":
            condition = step.request.get("ifNoneExist")
            try:
                found = await matching_ids(ctx, step.type, condition, "ifNoneExist") if condition else []
            except FhirError as exc:
                raise _entry_error(step.index, exc) from exc
            assigned[step.index] = found[0] if found else new_id()
            if step.full_url:
                rewrites[step.full_url] = f"{step.type}/{assigned[step.index]}"
        elif step.method == "PUT" and step.id and step.full_url and step.full_url.startswith("urn:"):
            rewrites[step.full_url] = f"{step.type}/{step.id}"
    return assigned, rewrites


async def _transaction(ctx: Ctx, steps: list[Step]) -> Response:
    assigned, rewrites = await _assign_ids(ctx, steps)
    if rewrites:
        for step in steps:
            step.resource = rewrite_references(step.resource, rewrites)
    results: dict[int, Entry] = {}
    async with ctx.store.transaction() as tx:
        for step in sorted(steps, key=lambda s: (ORDER[s.method], s.index)):
            try:
                results[step.index] = await _run(ctx, tx, step, assigned)
            except FhirError as exc:
                raise _entry_error(step.index, exc) from exc
    return bundle_response("transaction-response", [results[s.index] for s in steps])


async def _batch(ctx: Ctx, entries: list[Any]) -> Response:
    out: list[Entry] = []
    for index, entry in enumerate(entries):
        try:
            step = _parse(index, entry)
            async with ctx.store.transaction() as tx:
                out.append(await _run(ctx, tx, step, {}))
        except FhirError as exc:
            outcome = operation_outcome(ctx.names.issues(_entry_error(index, exc).issues))
            out.append(Entry(response={"status": str(exc.status), "outcome": outcome}))
    return bundle_response("batch-response", out)


@router.post("/fhir", name="transaction")
async def handle(request: Request) -> Response:
    ctx = await context(request)
    bundle = await read_json(request, ctx.services.settings.max_body_bytes)
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise FhirError.of(400, "invalid", "POST to the base expects a Bundle of type batch or transaction")
    kind = bundle.get("type")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise FhirError.of(400, "structure", "Bundle.entry must be a list", ("Bundle.entry",))
    if kind == "batch":
        return await _batch(ctx, entries)
    if kind == "transaction":
        return await _transaction(ctx, [_parse(i, e) for i, e in enumerate(entries)])
    raise FhirError.of(400, "invalid", f"Bundle.type {kind!r} cannot be processed: send batch or transaction",
                       ("Bundle.type",))
