"""A deliberately broken FHIR server: correct in everything except the lies in its CapabilityStatement.

It holds one Specimen and answers read, vread, search (`_id`, `status`) and errors the way a
FHIR server should. Its lies, and nothing else, must come out of a conformance run:
- it declares `history-instance` on Specimen but has no such route;
- it declares the search parameter `type` on Specimen but ignores it — while even echoing it
  in the self link, so only a search that must not match can catch it.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

LIES = {"capabilities/history-instance/Specimen", "search/Specimen/type/filters"}
"""The case ids a conformance run must fail, exactly."""

BASE = "/fhir"
SPECIMEN = {"resourceType": "Specimen", "id": "s1", "meta": {"versionId": "1", "lastUpdated": "2024-01-02T03:04:05Z"},
            "status": "available",
            "type": {"coding": [{"system": "http://snomed.info/sct", "code": "119297000"}]}}
_SEARCH = {"_id": lambda r, v: r["id"] == v, "status": lambda r, v: r["status"] == v, "type": lambda r, v: True}
_RESULT_PARAMS = {"_count", "_format"}


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/fhir+json")


def _outcome(status: int, code: str, text: str) -> Response:
    issue = {"severity": "error", "code": code, "diagnostics": text}
    return _json({"resourceType": "OperationOutcome", "issue": [issue]}, status)


def _capability(request: Request) -> Response:
    if request.query_params.get("_format", "json") not in ("json", "application/fhir+json"):
        return _outcome(406, "not-supported", "only JSON here")
    interactions = ["read", "vread", "search-type", "history-instance"]  # the last one is a lie
    params = [{"name": "_id", "type": "token"}, {"name": "status", "type": "token"},
              {"name": "type", "type": "token"}]  # `type` is a lie: it is ignored
    specimen = {"type": "Specimen", "interaction": [{"code": c} for c in interactions], "searchParam": params}
    return _json({"resourceType": "CapabilityStatement", "status": "active", "date": "2024-01-01", "kind": "instance",
                  "fhirVersion": "4.0.1", "format": ["application/fhir+json"],
                  "rest": [{"mode": "server", "resource": [specimen]}]})


def _search(request: Request, items: list[tuple[str, str]]) -> Response:
    strict = "handling=strict" in request.headers.get("prefer", "")
    matches = [SPECIMEN]
    for name, value in items:
        if name in _RESULT_PARAMS:
            continue
        if name not in _SEARCH:
            if strict:
                return _outcome(400, "not-supported", f"unknown search parameter {name}")
            continue
        matches = [r for r in matches if _SEARCH[name](r, value)]
    count = int(dict(items).get("_count", "20"))
    query = "&".join(f"{k}={v}" for k, v in items)
    return _json({"resourceType": "Bundle", "type": "searchset", "total": len(matches),
                  "link": [{"relation": "self", "url": f"{request.base_url}fhir/Specimen?{query}"}],
                  "entry": [{"fullUrl": f"{request.base_url}fhir/Specimen/{r['id']}", "resource": r,
                             "search": {"mode": "match"}} for r in matches[:count]]})


async def _type(request: Request) -> Response:
    if request.path_params["type"] != "Specimen":
        return _outcome(404, "not-supported", "unknown resource type")
    if request.method == "POST":
        return _search(request, list((await request.form()).multi_items()))
    return _search(request, list(request.query_params.multi_items()))


def _read(request: Request) -> Response:
    type_, id_ = request.path_params["type"], request.path_params["id"]
    if type_ != "Specimen":
        return _outcome(404, "not-supported", "unknown resource type")
    if id_ != SPECIMEN["id"]:
        return _outcome(404, "not-found", f"Specimen/{id_} is not known")
    return _json(SPECIMEN, headers={"ETag": 'W/"1"'})


def _vread(request: Request) -> Response:
    if request.path_params["vid"] != "1":
        return _outcome(404, "not-found", "no such version")
    return _read(request)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    return _outcome(status, "not-found" if status == 404 else "not-supported", f"{request.method} {request.url.path}")


app = Starlette(routes=[
    Route(f"{BASE}/metadata", _capability),
    Route(f"{BASE}/{{type}}/_search", _type, methods=["POST"]),
    Route(f"{BASE}/{{type}}/{{id}}/_history/{{vid}}", _vread),
    Route(f"{BASE}/{{type}}/{{id}}", _read),
    Route(f"{BASE}/{{type}}", _type),
], exception_handlers={404: _not_found, 405: _not_found})
