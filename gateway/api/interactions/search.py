"""search — https://hl7.org/fhir/R4/http.html#search, search.html.

`GET /fhir/{type}?...` and `POST /fhir/{type}/_search` (form body, plus any URL parameters)
are the same search. The restriction of the principal goes into the query (the engine
compiles it into SQL); every resource of the Bundle then leaves through the egress gate
in `responses.searchset_bytes`. Links are built from the public base URL and repeat the
parameters that were understood, so following them never resurrects an ignored one.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.context import Ctx, context, stored_type
from gateway.api.responses import fhir_response, searchset_bytes
from gateway.fhir.errors import FhirError
from gateway.search.cursor import links
from gateway.search.engine import SearchEngine

router = APIRouter()
_FORM = "application/x-www-form-urlencoded"


def engine_of(ctx: Ctx) -> SearchEngine:
    engine = ctx.services.search
    if not isinstance(engine, SearchEngine):
        raise TypeError("the app's search service is not a gateway.search SearchEngine")
    return engine


async def searchset(ctx: Ctx, type_: str, params: list[tuple[str, str]]) -> bytes:
    """The searchset Bundle for `type_?params`, as this principal may see it (also used by batch GET entries)."""
    ctx.gate.require(ctx.principal, stored_type(type_), "search")
    restriction = ctx.gate.restrict(ctx.principal)
    page = await engine_of(ctx).search(type_, params, restriction, strict=ctx.prefer.handling == "strict")
    page_links = links(ctx.base, f"/{type_}", page.query.kept, page.query.page, page.next, page.previous)
    return await searchset_bytes(ctx, page.matches, page.included, total=page.total, links=page_links, shape=page.shape,
                           outcome=page.issues)


@router.get("/fhir/{type}", name="search-type")
async def search_type(type: str, request: Request) -> Response:
    ctx = await context(request)
    return fhir_response(await searchset(ctx, type, list(request.query_params.multi_items())))


@router.post("/fhir/{type}/_search", name="search-type-post")
async def search_type_post(type: str, request: Request) -> Response:
    ctx = await context(request)
    media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media != _FORM:
        raise FhirError.of(415, "not-supported", f"POST _search takes a {_FORM} body, not {media or '(none)'}")
    form = await request.form()
    body = [(k, v) for k, v in form.multi_items() if not isinstance(v, UploadFile)]
    return fhir_response(await searchset(ctx, type, [*request.query_params.multi_items(), *body]))
