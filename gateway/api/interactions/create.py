"""create and conditional create — https://hl7.org/fhir/R4/http.html#create, #ccreate."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.body import read_json
from gateway.api.conditional import matching_ids
from gateway.api.context import Ctx, context, writable_type
from gateway.api.responses import resource_response
from gateway.api.writing import checked
from gateway.store import StoredResource, Transaction

router = APIRouter()


async def create(ctx: Ctx, tx: Transaction, type_: str, resource: Any,
                 if_none_exist: str | None, id_: str | None = None) -> tuple[StoredResource, bool]:
    """(stored, created): with `If-None-Exist` matching one resource, that one, not created.
    `id_`: an id the server assigned beforehand (transaction entries referenced by urn:uuid)."""
    ctx.gate.require(ctx.principal, type_, "create")
    resource = checked(ctx, resource, type_)
    if if_none_exist:
        found = await matching_ids(ctx, type_, if_none_exist, "If-None-Exist")
        if found:
            existing = await tx.current(type_, found[0])
            if existing is not None:
                return existing, False
    return await tx.create(resource, id_), True


@router.post("/fhir/{type}", name="create")
async def handle(type: str, request: Request) -> Response:
    ctx = await context(request)
    ctx.gate.require(ctx.principal, writable_type(type), "create")
    resource = await read_json(request, ctx.services.settings.max_body_bytes)
    async with ctx.store.transaction() as tx:
        stored, created = await create(ctx, tx, type, resource, request.headers.get("if-none-exist"))
    return await resource_response(ctx, stored, 201 if created else 200, created=created, honour_prefer=True)
