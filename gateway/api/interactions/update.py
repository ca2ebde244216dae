"""update (also update-as-create with a client id) and conditional update —
https://hl7.org/fhir/R4/http.html#update, #cond-update.

Without `If-Match`, an update that loses a race with a concurrent writer is retried on the
new current version (the client asked for "this content now"); with `If-Match` it is a 412.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.body import read_json
from gateway.api.conditional import matching_ids
from gateway.api.context import Ctx, context, writable_type
from gateway.api.responses import resource_response
from gateway.api.writing import checked, conflict, parse_if_match
from gateway.fhir.errors import FhirError
from gateway.store import StoredResource, Transaction, VersionConflict
from gateway.store.resources import new_id

router = APIRouter()
RETRIES = 5


async def update(ctx: Ctx, tx: Transaction, type_: str, id_: str, resource: Any,
                 if_match: int | None) -> tuple[StoredResource, bool]:
    """(stored, created) for PUT {type}/{id}."""
    ctx.gate.require(ctx.principal, type_, "update")
    if isinstance(resource, dict) and resource.get("id") != id_:
        raise FhirError.of(400, "invalid", f"The resource's id ({resource.get('id')!r}) must equal the id in the "
                           f"URL ({id_!r})", (f"{type_}.id",))
    resource = checked(ctx, resource, type_)
    try:
        return await tx.update(resource, if_match)
    except VersionConflict as exc:
        raise conflict(exc, if_match) from exc


async def conditional_target(ctx: Ctx, type_: str, query: str, resource: Any) -> str:
    """The id a conditional update writes to: the one match, else the body's id, else a new one."""
    found = await matching_ids(ctx, type_, query, "Conditional update")
    body_id = resource.get("id") if isinstance(resource, dict) else None
    if found:
        if body_id and body_id != found[0]:
            raise FhirError.of(400, "invalid", f"The resource's id {body_id!r} differs from the matched "
                               f"{type_}/{found[0]}")
        return found[0]
    if body_id:
        return body_id
    return new_id()


async def _write(ctx: Ctx, type_: str, id_: str, resource: Any, if_match: int | None) -> Response:
    for attempt in range(RETRIES):
        try:
            async with ctx.store.transaction() as tx:
                stored, created = await update(ctx, tx, type_, id_, resource, if_match)
            break
        except FhirError as exc:
            if exc.status != 409 or if_match is not None or attempt == RETRIES - 1:
                raise
    return await resource_response(ctx, stored, 201 if created else 200, created=created, honour_prefer=True)


@router.put("/fhir/{type:stored}/{id}", name="update")
async def handle(type: str, id: str, request: Request) -> Response:
    ctx = await context(request)
    ctx.gate.require(ctx.principal, writable_type(type), "update")
    resource = await read_json(request, ctx.services.settings.max_body_bytes)
    return await _write(ctx, type, id, resource, parse_if_match(request.headers.get("if-match")))


@router.put("/fhir/{type}", name="conditional-update")
async def handle_conditional(type: str, request: Request) -> Response:
    ctx = await context(request)
    ctx.gate.require(ctx.principal, writable_type(type), "update")
    resource = await read_json(request, ctx.services.settings.max_body_bytes)
    target = await conditional_target(ctx, type, request.url.query, resource)
    if isinstance(resource, dict):
        resource = {**resource, "id": target}
    return await _write(ctx, type, target, resource, parse_if_match(request.headers.get("if-match")))
