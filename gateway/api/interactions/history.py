"""history: instance, type and system — https://hl7.org/fhir/R4/http.html#history.

Newest first, keyset-paged on the version sequence. Types the principal may not read are
never listed (whole-system history is a known side door); types granted only through
`patient/` scopes show the launch patient's versions only (type level) and are left out
of whole-system history.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.context import Ctx, context, stored_type
from gateway.api.responses import bundle_response, history_entries
from gateway.fhir import paging
from gateway.fhir.errors import FhirError
from gateway.fhir.instant import parse_instant

router = APIRouter()


def _since(request: Request) -> int | None:
    value = request.query_params.get("_since")
    if not value:
        return None
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise FhirError.of(400, "invalid", f"_since must be a FHIR instant, got {value!r}") from exc


async def _history(ctx: Ctx, request: Request, path: str, types: list[str] | None, id_: str | None,
                   compartments: frozenset[str] | None) -> Response:
    settings = ctx.services.settings
    count = paging.parse_count(request.query_params.get("_count"), settings.default_count, settings.max_count)
    since = _since(request)
    token = request.query_params.get("_page")
    before = paging.decode(token).get("seq") if token else None
    if types is not None and not types:
        return bundle_response("history", [], total=0, links=[("self", str(request.url))])
    versions, seqs = await ctx.store.history(types, id_, since, before, count, compartments)
    total = await ctx.store.history_count(types, id_, since, compartments)
    keep = [(k, v) for k, v in request.query_params.multi_items() if k != "_page"]
    links = [("self", f"{ctx.base}{path}" + (f"?{urlencode(keep)}" if keep else ""))]
    if len(versions) == count and seqs:
        links.append(("next", f"{ctx.base}{path}?{urlencode([*keep, ('_page', paging.encode({'seq': seqs[-1]}))])}"))
    return bundle_response("history", await history_entries(ctx, versions), total=total, links=links)


@router.get("/fhir/_history", name="history-system")
async def system(request: Request) -> Response:
    ctx = await context(request)
    restriction = ctx.gate.restrict(ctx.principal, "r")
    types = sorted(restriction.readable - restriction.confined)
    return await _history(ctx, request, "/_history", types, None, None)


@router.get("/fhir/{type}/_history", name="history-type")
async def type_level(type: str, request: Request) -> Response:
    ctx = await context(request)
    ctx.gate.require(ctx.principal, stored_type(type), "history")
    restriction = ctx.gate.restrict(ctx.principal, "r")
    return await _history(ctx, request, f"/{type}/_history", [type], None, restriction.compartment_filter(type))


@router.get("/fhir/{type}/{id}/_history", name="history-instance")
async def instance(type: str, id: str, request: Request) -> Response:
    ctx = await context(request)
    ctx.gate.require(ctx.principal, stored_type(type), "history")
    restriction = ctx.gate.restrict(ctx.principal, "r")
    return await _history(ctx, request, f"/{type}/{id}/_history", [type], await ctx.names.subject_id(type, id),
                          restriction.compartment_filter(type))
