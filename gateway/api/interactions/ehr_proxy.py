"""Read and search of the EHR-proxied types — https://hl7.org/fhir/R4/http.html#read,
https://hl7.org/fhir/R4/search.html — and `Patient/{id}/$ehr-summary`.

Explicit paths per proxied type (`/fhir/Condition`, `/fhir/Condition/{id}`, ...), included
before the generic routes so they win. Every resource leaves through the egress gate
(`Gate.disclose_resource`, kind "ehr": scopes, `permits_ehr_linkage` consent, pseudonymisation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.access.gate import forbidden
from gateway.access.scopes import SEARCH
from gateway.api.context import Ctx, context
from gateway.api.responses import bundle_response, fhir_response, not_found
from gateway.ehr import Asker, EhrService, Proxied, ProxyQuery, parse
from gateway.fhir.bundle import Entry
from gateway.fhir.errors import FhirError
from gateway.served import PROXIED_TYPES

router = APIRouter()

SUMMARY_TYPES = ("Condition", "Observation", "MedicationRequest")


def _ehr(request: Request) -> EhrService:
    ehr: EhrService | None = getattr(request.app.state, "ehr", None)
    if ehr is None:
        raise FhirError.of(404, "not-supported", "EHR-proxied resources are not available: this gateway has no "
                           "EHR configured (GATEWAY_EHR_BASE_URL)")
    return ehr


def _asker(ctx: Ctx) -> Asker:
    return Asker(ctx.principal.client_id, ctx.principal.audience)


def _bypass(request: Request) -> bool:
    """`Cache-Control: no-cache`: the client wants the EHR asked, not the gateway's cache."""
    return "no-cache" in request.headers.get("cache-control", "").lower()


async def _released(ctx: Ctx, items: list[Proxied]) -> list[Entry]:
    """Bundle entries of what the gate lets out, pseudonymised as it decides; the rest is left out."""
    entries = []
    for item in items:
        resource = await ctx.gate.disclose_resource(ctx.principal, item.resource, item.patient, kind="ehr")
        if resource is not None:
            url = f"{ctx.base}/{resource['resourceType']}/{resource['id']}"
            entries.append(Entry(url, orjson.dumps(resource)))
    return entries


def _confined(ctx: Ctx, query: ProxyQuery) -> ProxyQuery:
    """Who may search whose EHR: a `patient/` scope only its launch patient (the default when the
    query names none); an external principal only a named biobank Patient."""
    principal = ctx.principal
    if principal.scopes.patient_only(query.type, SEARCH):
        if principal.patient is None or query.patient not in (None, principal.patient):
            raise forbidden(principal, query.type, "search of another patient's EHR record")
        query = dataclasses.replace(query, patient=principal.patient)
    if not principal.internal and query.patient is None:
        raise FhirError.of(400, "invalid", f"Searching {query.type} needs a patient: add "
                           "patient=Patient/<id> naming a biobank Patient")
    return query


def _search(type_: str) -> Callable[[Request], Awaitable[Response]]:
    async def search(request: Request) -> Response:
        ctx = await context(request)
        ctx.gate.require(ctx.principal, type_, "search")
        ehr = _ehr(request)
        token = request.query_params.get("_page")
        if token:
            page = await ehr.page(type_, token, _asker(ctx), _bypass(request))
        else:
            settings = ctx.services.settings
            query = parse(type_, list(request.query_params.multi_items()), ctx.base, settings.default_count,
                          settings.max_count)
            if query.patient is not None:
                query = dataclasses.replace(query, patient=await ctx.names.subject_id("Patient", query.patient))
            page = await ehr.search(_confined(ctx, query), _asker(ctx), _bypass(request))
        entries = await _released(ctx, page.items)
        for entry in entries:
            entry.search_mode = "match"
        links = [("self", f"{ctx.base}/{type_}?{request.url.query}" if request.url.query else f"{ctx.base}/{type_}")]
        if page.next:
            links.append(("next", f"{ctx.base}/{type_}?{urlencode({'_page': page.next})}"))
        response = bundle_response("searchset", entries, links=links)
        response.headers["X-Cache"] = page.cache
        return response

    return search


def _read(type_: str) -> Callable[[str, Request], Awaitable[Response]]:
    async def read(id: str, request: Request) -> Response:
        ctx = await context(request)
        ctx.gate.require(ctx.principal, type_, "read")
        item = await _ehr(request).read(type_, id, _asker(ctx), _bypass(request))
        entries = await _released(ctx, [item]) if item is not None else []
        if not entries or entries[0].resource is None:
            raise not_found(type_, id)
        return fhir_response(entries[0].resource)

    return read


for _type in PROXIED_TYPES:
    router.add_api_route(f"/fhir/{_type}", _search(_type), methods=["GET"], name=f"ehr-search-{_type}")
    router.add_api_route(f"/fhir/{_type}/{{id}}", _read(_type), methods=["GET"], name=f"ehr-read-{_type}")


@router.get("/fhir/Patient/{id}/$ehr-summary", name="ehr-summary")
async def summary(id: str, request: Request) -> Response:
    """The donor's EHR Conditions, Observations and MedicationRequests in one collection Bundle,
    fetched in parallel; the types the principal may not search are left out."""
    ctx = await context(request)
    types = [t for t in SUMMARY_TYPES if ctx.principal.scopes.allows(t, SEARCH)]
    if not types:
        raise forbidden(ctx.principal, "Condition", "$ehr-summary")
    ctx.gate.require(ctx.principal, "Patient", "read")
    ehr = _ehr(request)
    subject = await ctx.names.subject_id("Patient", id)
    stored = await ctx.store.read("Patient", subject)
    if stored is None or stored.deleted or await ctx.gate.disclose(ctx.principal, stored) is None:
        raise not_found("Patient", id)
    entries = await _released(ctx, await ehr.summary(subject, types, _asker(ctx)))
    return bundle_response("collection", entries)
