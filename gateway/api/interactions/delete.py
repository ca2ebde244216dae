"""delete and conditional delete — https://hl7.org/fhir/R4/http.html#delete.

Deletes are soft: a new version flagged deleted; history keeps everything before it.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.conditional import matching_ids
from gateway.api.context import Ctx, context, writable_type
from gateway.api.responses import not_found
from gateway.api.writing import conflict, parse_if_match
from gateway.store import StoredResource, Transaction, VersionConflict

router = APIRouter()


async def delete(ctx: Ctx, tx: Transaction, type_: str, id_: str, if_match: int | None) -> StoredResource | None:
    """The deletion version, or None when the resource was already deleted (FHIR: still a success)."""
    ctx.gate.require(ctx.principal, type_, "delete")
    current = await tx.current(type_, id_)
    if current is None or not ctx.gate.visible(ctx.principal, current):
        raise not_found(type_, id_)
    try:
        return await tx.delete(type_, id_, if_match)
    except VersionConflict as exc:
        raise conflict(exc, if_match) from exc


@router.delete("/fhir/{type:stored}/{id}", name="delete")
async def handle(type: str, id: str, request: Request) -> Response:
    ctx = await context(request)
    ctx.gate.require(ctx.principal, writable_type(type), "delete")
    async with ctx.store.transaction() as tx:
        stored = await delete(ctx, tx, type, id, parse_if_match(request.headers.get("if-match")))
    headers = {"ETag": f'W/"{stored.version}"'} if stored else {}
    return Response(status_code=204, headers=headers)


@router.delete("/fhir/{type}", name="conditional-delete")
async def handle_conditional(type: str, request: Request) -> Response:
    ctx = await context(request)
    ctx.gate.require(ctx.principal, writable_type(type), "delete")
    found = await matching_ids(ctx, type, request.url.query, "Conditional delete")
    if found:
        async with ctx.store.transaction() as tx:
            await delete(ctx, tx, type, found[0], None)
    return Response(status_code=204)
