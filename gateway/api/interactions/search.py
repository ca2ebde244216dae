"""search — https://hl7.org/fhir/R4/http.html#search, search.html.

Type level: `GET /fhir/{type}?...` and `POST /fhir/{type}/_search`; system level (several or all
types, `_type`): `GET /fhir?...` and `POST /fhir/_search`. A POST takes a form body, plus any URL
parameters, and is the same search as the GET. The restriction of the principal goes into the query
(the engine compiles it into SQL, for every searched type); every resource of the Bundle then leaves
through the egress gate in `responses.searchset_bytes`. Links are built from the public base URL and
repeat the parameters that were understood, so following them never resurrects an ignored one.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.context import Ctx, context, stored_type
from gateway.api.paths import HotRoute
from gateway.api.responses import fhir_response, searchset_bytes
from gateway.fhir.errors import FhirError
from gateway.search.cursor import links
from gateway.search.engine import Page, SearchEngine

_FORM = "application/x-www-form-urlencoded"


def engine_of(ctx: Ctx) -> SearchEngine:
    engine = ctx.services.search
    if not isinstance(engine, SearchEngine):
        raise TypeError("the app's search service is not a gateway.search SearchEngine")
    return engine


async def _bundle(ctx: Ctx, path: str, page: Page) -> bytes:
    page_links = links(ctx.base, path, page.kept, page.token, page.next, page.previous)
    return await searchset_bytes(ctx, page.matches, page.included, total=page.total, links=page_links,
                                 shape=page.shape, outcome=page.issues)


async def searchset(ctx: Ctx, type_: str, params: list[tuple[str, str]]) -> bytes:
    """The searchset Bundle for `type_?params`, as this principal may see it (also used by batch GET entries)."""
    ctx.gate.require(ctx.principal, stored_type(type_), "search")
    restriction = ctx.gate.restrict(ctx.principal)
    page = await engine_of(ctx).search(type_, await ctx.names.params(params), restriction,
                                       strict=ctx.prefer.handling == "strict")
    return await _bundle(ctx, f"/{type_}", page)


async def system_searchset(ctx: Ctx, params: list[tuple[str, str]]) -> bytes:
    """The searchset Bundle for `[base]?params`: the types of `_type` (else every type the principal may read)."""
    restriction = ctx.gate.restrict(ctx.principal)
    page = await engine_of(ctx).search_system(await ctx.names.params(params), restriction,
                                              strict=ctx.prefer.handling == "strict")
    return await _bundle(ctx, "", page)


async def _form_params(request: Request) -> list[tuple[str, str]]:
    """URL parameters, then those of the form body (415 for any other body)."""
    media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media != _FORM:
        raise FhirError.of(415, "not-supported", f"POST _search takes a {_FORM} body, not {media or '(none)'}")
    form = await request.form()
    body = [(k, v) for k, v in form.multi_items() if not isinstance(v, UploadFile)]
    return [*request.query_params.multi_items(), *body]


async def search_system(request: Request) -> Response:
    ctx = await context(request)
    return fhir_response(await system_searchset(ctx, list(request.query_params.multi_items())))


async def search_system_post(request: Request) -> Response:
    ctx = await context(request)
    return fhir_response(await system_searchset(ctx, await _form_params(request)))


async def search_type(request: Request) -> Response:
    ctx = await context(request)
    return fhir_response(await searchset(ctx, request.path_params["type"], list(request.query_params.multi_items())))


async def search_type_post(request: Request) -> Response:
    ctx = await context(request)
    return fhir_response(await searchset(ctx, request.path_params["type"], await _form_params(request)))


router = APIRouter(routes=[  # plain routes: FastAPI's dependency solving was 6% of a search's worker CPU
    # Precise paths (a stored type), so the app matches them right after read: trying the ~45 routes in front of
    # the generic ones cost 30-50 us a search (5-7% of its worker CPU).
    HotRoute("/fhir", search_system, methods=["GET"], name="search-system"),
    HotRoute("/fhir/_search", search_system_post, methods=["POST"], name="search-system-post"),
    HotRoute("/fhir/{type:stored}", search_type, methods=["GET"], name="search-type"),
    HotRoute("/fhir/{type:stored}/_search", search_type_post, methods=["POST"], name="search-type-post"),
])
unstored = APIRouter(routes=[  # last: the search of a type not stored here answers 404 (`stored_type`)
    HotRoute("/fhir/{type}", search_type, methods=["GET"], name="search-type"),
    HotRoute("/fhir/{type}/_search", search_type_post, methods=["POST"], name="search-type-post"),
])
