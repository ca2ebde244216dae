"""The OpenAPI 3.1 description of the whole HTTP surface, generated — `python -m gateway.openapi > openapi.yaml`.

Why generated from the app: the same two sources the CapabilityStatement uses — the routes
the app really registered and the capabilities builder (interactions, search parameters,
operations, security per type) — so openapi.yaml, /fhir/metadata and the code cannot
disagree. The FHIR and OAuth standards fill in only what a route cannot say about itself
(the request headers of an interaction, the form fields of RFC 6749/7662/7009, the
parameters of Bulk Data $export). The output is deterministic: a test compares it with
the committed openapi.yaml.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from starlette.routing import BaseRoute

from gateway import __version__
from gateway.api.interactions import capabilities
from gateway.app import create_app
from gateway.settings import Settings

PUBLIC_BASE = "http://127.0.0.1:8080"
"""The server `make run` starts; the description is of that default deployment."""

FHIR_JSON = "application/fhir+json"
_FHIR_ID = {"type": "string", "pattern": "^[A-Za-z0-9\\-\\.]{1,64}$"}
_ROUTE_INTERACTION = {
    "read": "read", "vread": "vread", "update": "update", "delete": "delete", "create": "create",
    "history-type": "history-type", "history-instance": "history-instance", "search-type": "search-type",
    "search-type-post": "search-type", "conditional-update": "update", "conditional-delete": "delete",
}
_SUCCESS = {"create": "201", "conditional-delete": "200", "delete": "200"}


def _header(name: str, description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": required, "schema": {"type": "string"},
            "description": description}


_INTERACTION_HEADERS: dict[str, list[dict[str, Any]]] = {
    "read": [_header("If-None-Match", "ETag of a version the client has: 304 when it is still current"),
             _header("If-Modified-Since", "HTTP date: 304 when the resource has not changed since")],
    "create": [_header("If-None-Exist", "FHIR query: conditional create"),
               _header("Prefer", "return=minimal | representation | OperationOutcome")],
    "update": [_header("If-Match", 'ETag (W/"n") the update is based on: 412 when stale'),
               _header("Prefer", "return=minimal | representation | OperationOutcome")],
    "conditional-update": [_header("Prefer", "return=minimal | representation | OperationOutcome")],
}
_HISTORY_QUERY = [
    {"name": "_count", "in": "query", "schema": {"type": "integer", "minimum": 1}, "description": "page size"},
    {"name": "_since", "in": "query", "schema": {"type": "string", "format": "date-time"},
     "description": "only versions after this instant"},
]
_OPERATION_QUERY: dict[str, list[dict[str, Any]]] = {
    "export": [
        {"name": name, "in": "query", "schema": {"type": "string"}, "description": text} for name, text in (
            ("_outputFormat", "application/fhir+ndjson (default), application/ndjson or ndjson"),
            ("_since", "FHIR instant: only resources changed after it"),
            ("_type", "comma-separated resource types"),
            ("_typeFilter", "comma-separated FHIR search queries, one per type"),
            ("_elements", "comma-separated elements to keep"))
    ] + [_header("Prefer", "must be respond-async", required=True)],
}
_OAUTH_FORMS: dict[str, dict[str, Any]] = {
    "auth-token": {"required": ["grant_type"], "fields": (
        "grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope", "client_id", "client_secret",
        "client_assertion_type", "client_assertion")},
    "auth-introspect": {"required": ["token"], "fields": ("token", "client_id", "client_assertion_type",
                                                          "client_assertion")},
    "auth-revoke": {"required": ["token"], "fields": ("token", "token_type_hint", "client_id",
                                                      "client_assertion_type", "client_assertion")},
}
_AUTHORIZE_QUERY = ("response_type", "client_id", "redirect_uri", "scope", "state", "aud", "code_challenge",
                    "code_challenge_method", "launch")


@dataclass(frozen=True)
class Route:
    path: str
    methods: tuple[str, ...]
    name: str


def _routes(routes: list[BaseRoute]) -> list[Route]:
    """Every registered HTTP route in registration order (the order the app matches them in)."""
    found: list[Route] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            found += _routes(inner.routes)
        elif getattr(route, "methods", None):
            methods = tuple(sorted(m for m in route.methods if m != "HEAD"))  # type: ignore[attr-defined]
            path = getattr(route, "path_format", route.path)  # without path convertors ({type:stored})
            found.append(Route(path, methods, route.name))  # type: ignore[attr-defined]
    return found


async def _surface() -> tuple[dict[str, Any], list[Route]]:
    with tempfile.TemporaryDirectory(prefix="gw-openapi-") as tmp:
        settings = Settings.model_construct(
            database_url=f"sqlite:///{tmp}/openapi.db", base_url=f"{PUBLIC_BASE}/fhir", data_dir=Path(tmp) / "data",
            auth_disabled=False, redis_url=None, ehr_base_url=None)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            statement = capabilities.build(app.state.services, app.routes)
        return statement, _routes(app.routes)


def surface() -> tuple[dict[str, Any], list[Route]]:
    """(CapabilityStatement, routes) of a freshly built app; its start-up output goes to stderr."""
    with contextlib.redirect_stdout(sys.stderr):
        return asyncio.run(_surface())


class Describer:
    """Turns the CapabilityStatement and the routes into OpenAPI paths and components."""

    def __init__(self, statement: dict[str, Any]) -> None:
        rest = statement["rest"][0]
        self.resources: dict[str, dict[str, Any]] = {r["type"]: r for r in rest.get("resource", [])}
        self.system_params: list[dict[str, Any]] = rest.get("searchParam", [])
        self.security = rest.get("security") or {}
        self.paths: dict[str, dict[str, Any]] = {}

    def interactions(self, type_: str) -> set[str]:
        return {i["code"] for i in self.resources[type_].get("interaction", [])}

    def add(self, route: Route) -> None:
        if "{type}" not in route.path:
            self._add_path(route.path, route, _type_of(route.path, self.resources))
            return
        code = _ROUTE_INTERACTION.get(route.name)
        for type_ in sorted(self.resources):
            if code is None or code in self.interactions(type_):
                self._add_path(route.path.replace("{type}", type_), route, type_)

    def _add_path(self, path: str, route: Route, type_: str | None) -> None:
        item = self.paths.setdefault(path, {})
        for method in route.methods:
            key = method.lower()
            if key in item:
                continue  # an earlier, more specific route answers this path (the app matches in order)
            item[key] = self._operation(path, method, route, type_)
        params = [{"name": n, "in": "path", "required": True, "schema": _FHIR_ID if n in ("id", "vid") else
                   {"type": "string"}} for n in re.findall(r"{(\w+)}", path)]
        if params:
            item["parameters"] = params

    def _operation(self, path: str, method: str, route: Route, type_: str | None) -> dict[str, Any]:
        suffix = f"-{method.lower()}" if len(route.methods) > 1 else ""
        fhir = path.startswith("/fhir")
        operation: dict[str, Any] = {
            "operationId": f"{route.name}{'-' + type_ if type_ and type_ not in route.name else ''}{suffix}",
            "tags": [_tag(path, type_)],
            "summary": _summary(route.name, type_),
        }
        parameters = self._parameters(path, method, route, type_)
        if parameters:
            operation["parameters"] = parameters
        body = self._body(path, method, route, type_)
        if body:
            operation["requestBody"] = body
        operation["responses"] = _responses(route.name, fhir, type_)
        if fhir and self.security and route.name not in ("capabilities", "smart-configuration"):
            operation["security"] = [{"smart": []}]
        return operation

    def _parameters(self, path: str, method: str, route: Route, type_: str | None) -> list[dict[str, Any]]:
        out = list(_INTERACTION_HEADERS.get(route.name, []))
        if route.name.startswith("history"):
            out += _HISTORY_QUERY
        if method == "GET" and type_ and path == f"/fhir/{type_}":
            out += self._search_params(type_)
        if route.name == "search-system":
            out += self._system_search_params()
        operation = _operation_name(path)
        if operation and method == "GET":
            out += _OPERATION_QUERY.get(operation, [])
        elif operation:
            out += [p for p in _OPERATION_QUERY.get(operation, []) if p["in"] == "header"]
        if route.name == "auth-authorize":
            out += [{"name": n, "in": "query", "schema": {"type": "string"}} for n in _AUTHORIZE_QUERY]
        return out

    def _search_params(self, type_: str) -> list[dict[str, Any]]:
        return _query_params(self.resources[type_].get("searchParam", []))

    def _system_search_params(self) -> list[dict[str, Any]]:
        """A search across types: the parameters every type serves, and `_type` to choose the types."""
        types = {"name": "_type", "in": "query", "schema": {"type": "string"},
                 "description": "comma-separated resource types to search (default: every type the client may read)"}
        return [types, *_query_params(self.system_params)]

    def _body(self, path: str, method: str, route: Route, type_: str | None) -> dict[str, Any] | None:
        if route.name in ("create", "update", "conditional-update") and type_:
            return {"required": True, "content": {FHIR_JSON: {"schema": {"$ref": f"#/components/schemas/{type_}"}}}}
        if route.name == "transaction":
            return {"required": True, "content": {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/Bundle"}}}}
        if route.name == "search-type-post" and type_:
            names = [p["name"] for p in self._search_params(type_)]
            return _form(names, [])
        if route.name == "search-system-post":
            return _form([p["name"] for p in self._system_search_params()], [])
        if route.name in _OAUTH_FORMS:
            spec = _OAUTH_FORMS[route.name]
            return _form(list(spec["fields"]), spec["required"])
        if _operation_name(path) and method == "POST":
            return {"content": {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/Parameters"}}}}
        return None

    def document(self) -> dict[str, Any]:
        components: dict[str, Any] = {"schemas": _schemas(sorted(self.resources))}
        scheme = _security_scheme(self.security)
        if scheme:
            components["securitySchemes"] = {"smart": scheme}
        return {
            "openapi": "3.1.0",
            "info": {"title": "Biobank FHIR Gateway", "version": __version__,
                     "description": "FHIR R4 (4.0.1) REST API, SMART authorization server and operations endpoints "
                                    "of the biobank gateway. Generated from the code (gateway/openapi.py) from the "
                                    "same source as /fhir/metadata; do not edit by hand."},
            "servers": [{"url": PUBLIC_BASE, "description": "make run"}],
            "paths": dict(sorted(self.paths.items())),
            "components": components,
        }


def _query_params(declared: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Query parameters of a search from CapabilityStatement `searchParam` entries, plus `_count`."""
    params = [{"name": p["name"], "in": "query", "schema": {"type": "string"},
               "description": f"{p.get('type', '')} search parameter" +
               (f" ({p['definition']})" if p.get("definition") else "")}
              for p in declared]
    if "_count" not in {p["name"] for p in params}:
        params.append({"name": "_count", "in": "query", "schema": {"type": "integer", "minimum": 0},
                       "description": "page size"})
    return params


def _type_of(path: str, resources: dict[str, Any]) -> str | None:
    parts = path.split("/")
    return parts[2] if len(parts) > 2 and parts[1] == "fhir" and parts[2] in resources else None


def _operation_name(path: str) -> str | None:
    last = next((p for p in reversed(path.split("/")) if p.startswith("$")), None)
    return last[1:] if last else None


def _tag(path: str, type_: str | None) -> str:
    if type_:
        return type_
    if path.startswith("/auth") or "smart-configuration" in path:
        return "SMART authorization"
    return "FHIR system" if path.startswith("/fhir") else "Operations"


def _summary(name: str, type_: str | None) -> str:
    return f"{name} {type_}" if type_ and type_ not in name else name


def _form(fields: list[str], required: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": {f: {"type": "string"} for f in fields}}
    if required:
        schema["required"] = required
    return {"required": bool(required), "content": {"application/x-www-form-urlencoded": {"schema": schema}}}


def _responses(name: str, fhir: bool, type_: str | None) -> dict[str, Any]:
    if not fhir:
        error = {"description": "error (OAuth 2.0 error object, or an HTML page for the authorization page)"}
        return {"200": {"description": "success"}, "4XX": error}
    schema = {"$ref": f"#/components/schemas/{type_}"} if type_ and name in (
        "read", "vread", "create", "update", "conditional-update") else {"$ref": "#/components/schemas/Resource"}
    outcome = {"description": "OperationOutcome",
               "content": {FHIR_JSON: {"schema": {"$ref": "#/components/schemas/OperationOutcome"}}}}
    return {_SUCCESS.get(name, "200"): {"description": "success", "content": {FHIR_JSON: {"schema": schema}}},
            "4XX": outcome, "5XX": outcome}


def _schemas(types: list[str]) -> dict[str, Any]:
    def resource(type_: str) -> dict[str, Any]:
        return {"type": "object", "required": ["resourceType"], "properties": {"resourceType": {"const": type_}}}

    schemas = {"Resource": {"type": "object", "required": ["resourceType"],
                            "properties": {"resourceType": {"type": "string"}}}}
    for type_ in sorted({*types, "Bundle", "OperationOutcome", "Parameters"}):
        schemas[type_] = resource(type_)
    return schemas


def _security_scheme(security: dict[str, Any]) -> dict[str, Any] | None:
    uris = next((e for e in security.get("extension", []) if str(e.get("url", "")).endswith("oauth-uris")), None)
    if uris is None:
        return None
    found = {e["url"]: e.get("valueUri", "") for e in uris.get("extension", [])}
    flows: dict[str, Any] = {}
    if found.get("token"):
        flows["clientCredentials"] = {"tokenUrl": found["token"], "scopes": {}}
    if found.get("authorize") and found.get("token"):
        flows["authorizationCode"] = {"authorizationUrl": found["authorize"], "tokenUrl": found["token"], "scopes": {}}
    return {"type": "oauth2", "description": "SMART on FHIR (App Launch 2, Backend Services)", "flows": flows}


def describe(statement: dict[str, Any], routes: list[Route]) -> dict[str, Any]:
    describer = Describer(statement)
    for route in routes:
        describer.add(route)
    return describer.document()


class _PlainDumper(yaml.SafeDumper):
    """No `&id001` anchors: every parameter written out where it applies, as a reader expects."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render() -> str:
    statement, routes = surface()
    return yaml.dump(describe(statement, routes), Dumper=_PlainDumper, sort_keys=False, allow_unicode=True,
                     width=120)


if __name__ == "__main__":
    sys.stdout.write(render())
