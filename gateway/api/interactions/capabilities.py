"""capabilities — https://hl7.org/fhir/R4/http.html#capabilities.

Generated from the routes the app really registered, the search engine's declared
parameters and the operations mounted, so it cannot drift from the code.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from gateway import __version__
from gateway.api.context import Services, services_of
from gateway.api.responses import fhir_response
from gateway.fhir.capability import TypeCapability, capability_statement
from gateway.fhir.negotiation import negotiate
from gateway.served import CONFORMANCE_TYPES, PROXIED_TYPES, STORED_TYPES

router = APIRouter()

_TYPE_ROUTES = {
    "read": "read", "vread": "vread", "create": "create", "update": "update", "delete": "delete",
    "history-type": "history-type", "history-instance": "history-instance", "search-type": "search-type",
}
_CONDITIONAL = {"conditional-update": "update", "conditional-delete": "delete", "create": "create"}
_WRITES = {"create", "update", "delete"}
_SYSTEM = {"transaction": ("transaction", "batch"), "history-system": ("history-system",),
           "search-system": ("search-system",)}


def _route_names(routes: list[BaseRoute]) -> set[str]:
    """Names of every route, looking inside included routers (FastAPI mounts them lazily)."""
    names: set[str] = set()
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            names |= _route_names(inner.routes)
        elif getattr(route, "name", None):
            names.add(route.name)
    return names


def _proxied(names: set[str]) -> list[TypeCapability]:
    """The EHR types the proxy routes serve (read and search, passed upstream)."""
    out = []
    for type_ in PROXIED_TYPES:
        cap = TypeCapability(type_)
        routes = (("read", f"ehr-read-{type_}"), ("search-type", f"ehr-search-{type_}"))
        cap.interactions = {code for code, route in routes if route in names}
        out.append(cap)
    return out


def build(services: Services, routes: list[BaseRoute], ehr_enabled: bool = False) -> dict:
    names = _route_names(routes)
    types = []
    for type_ in sorted(STORED_TYPES):
        cap = TypeCapability(type_)
        for route, code in _TYPE_ROUTES.items():
            if route in names and not (type_ in CONFORMANCE_TYPES and code in _WRITES):
                cap.interactions.add(code)
        if type_ not in CONFORMANCE_TYPES:
            cap.conditional = {c for r, c in _CONDITIONAL.items() if r in names}
        if "search-type" in names:
            cap.search_params = services.search.declared(type_)
            cap.search_include, cap.search_rev_include = services.search.includes(type_)
        cap.supported_profiles = services.profiles_for(type_)
        cap.operations = [op.entry() for op in services.operations if type_ in op.types]
        types.append(cap)
    if ehr_enabled:
        types.extend(_proxied(names))
    system = {code for route, codes in _SYSTEM.items() if route in names for code in codes}
    system_ops = [op.entry() for op in services.operations if not op.types]
    return capability_statement(
        base_url=services.base_url, software_version=__version__, types=types, system_interactions=system,
        system_operations=system_ops, security=services.security, date=datetime.now(UTC).strftime("%Y-%m-%d"),
        system_search_params=services.search.declared_system() if "search-system" in system else None,
    )


@router.get("/fhir/metadata", name="capabilities")
async def metadata(request: Request) -> Response:
    negotiate(request.query_params.get("_format"), request.headers.get("accept"))
    ehr = getattr(request.app.state, "ehr", None) is not None
    return fhir_response(orjson.dumps(build(services_of(request), request.app.routes, ehr)))
