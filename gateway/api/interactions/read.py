"""read and vread — https://hl7.org/fhir/R4/http.html#read, #vread.

The hot path: one point query, the stored bytes out through the gate, no model objects.
`If-None-Match` / `If-Modified-Since` answer 304 without a body. Plain Starlette routes:
FastAPI's per-request dependency solving and parameter validation would cost a fifth of a
read, and there is nothing to solve (the path convertors already checked type and id).
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.context import context, stored_type
from gateway.api.headers import header
from gateway.api.paths import HotRoute
from gateway.api.responses import not_found, resource_response, version_headers
from gateway.fhir.errors import FhirError
from gateway.fhir.instant import from_datetime
from gateway.store import StoredResource


def _not_modified(request: Request, stored: StoredResource) -> bool:
    etag = header(request, b"if-none-match")
    if etag is not None:
        return etag.strip().removeprefix("W/").strip('"') == str(stored.version)
    since = header(request, b"if-modified-since")
    if since:
        try:
            return stored.ts // 1_000_000 <= from_datetime(parsedate_to_datetime(since)) // 1_000_000
        except (TypeError, ValueError):
            return False
    return False


def _gone(stored: StoredResource) -> FhirError:
    return FhirError.of(410, "deleted", f"{stored.type}/{stored.id} was deleted (version {stored.version})",
                        headers=version_headers(stored))


async def read(request: Request) -> Response:
    type, id = request.path_params["type"], request.path_params["id"]
    ctx = await context(request)
    ctx.gate.require(ctx.principal, stored_type(type), "read")
    stored = await ctx.store.read(type, await ctx.names.subject_id(type, id))
    if stored is None:
        raise not_found(type, id)
    if stored.deleted:
        raise _gone(stored)
    if not ctx.gate.visible(ctx.principal, stored):
        raise not_found(type, id)
    if _not_modified(request, stored):
        return Response(status_code=304, headers=version_headers(stored))
    return await resource_response(ctx, stored)


async def vread(request: Request) -> Response:
    type, id, vid = request.path_params["type"], request.path_params["id"], request.path_params["vid"]
    ctx = await context(request)
    ctx.gate.require(ctx.principal, stored_type(type), "vread")
    if not vid.isdigit():
        raise FhirError.of(404, "not-found", f"{type}/{id} has no version {vid!r}: version ids are 1, 2, ...")
    stored = await ctx.store.vread(type, await ctx.names.subject_id(type, id), int(vid))
    if stored is None or not ctx.gate.visible(ctx.principal, stored):
        raise FhirError.of(404, "not-found", f"{type}/{id} has no version {vid}")
    if stored.deleted:
        raise _gone(stored)
    return await resource_response(ctx, stored)


router = APIRouter(routes=[
    HotRoute("/fhir/{type:stored}/{id:fhirid}", read, methods=["GET"], name="read"),
    HotRoute("/fhir/{type:stored}/{id:fhirid}/_history/{vid}", vread, methods=["GET"], name="vread"),
])
