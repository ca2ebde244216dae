"""The test EHR's HTTP face: FHIR read/search with paging and ETags, a CapabilityStatement,
SMART discovery and a backend-services token endpoint; `/_control/*` lets tests revoke
tokens and count requests."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import Counter
from typing import Any
from urllib.parse import urlencode

import jwt
import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from tests.ehr.upstream.data import Dataset

FHIR_JSON = "application/fhir+json"
REF, TOKEN, DATE, STRING = "reference", "token", "date", "string"
PARAMS: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "Patient": {"identifier": (TOKEN, ("identifier",))},
    "Condition": {"patient": (REF, ("subject",)), "subject": (REF, ("subject",)), "code": (TOKEN, ("code",)),
                  "clinical-status": (TOKEN, ("clinicalStatus",)), "category": (TOKEN, ("category",)),
                  "onset-date": (DATE, ("onsetDateTime",))},
    "Observation": {"patient": (REF, ("subject",)), "subject": (REF, ("subject",)), "code": (TOKEN, ("code",)),
                    "category": (TOKEN, ("category",)), "date": (DATE, ("effectiveDateTime",))},
    "MedicationRequest": {"patient": (REF, ("subject",)), "subject": (REF, ("subject",)),
                          "status": (TOKEN, ("status",)), "intent": (TOKEN, ("intent",)),
                          "code": (TOKEN, ("medicationCodeableConcept",)), "authoredon": (DATE, ("authoredOn",))},
    "Encounter": {"patient": (REF, ("subject",)), "subject": (REF, ("subject",)), "class": (TOKEN, ("class",)),
                  "status": (TOKEN, ("status",))},
    "Procedure": {"patient": (REF, ("subject",)), "subject": (REF, ("subject",)), "code": (TOKEN, ("code",))},
    "DiagnosticReport": {"patient": (REF, ("subject",)), "subject": (REF, ("subject",)),
                         "category": (TOKEN, ("category",)), "code": (TOKEN, ("code",))},
    "AllergyIntolerance": {"patient": (REF, ("patient",)), "clinical-status": (TOKEN, ("clinicalStatus",))},
}


def outcome(status: int, text: str) -> Response:
    body = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid",
                                                           "diagnostics": text}]}
    return Response(orjson.dumps(body), status_code=status, media_type=FHIR_JSON)


def _codes(element: Any) -> list[tuple[str | None, str]]:
    """(system, code) pairs of a code / Coding / CodeableConcept / Identifier (or a list of them)."""
    out: list[tuple[str | None, str]] = []
    for item in element if isinstance(element, list) else [element]:
        if isinstance(item, str):
            out.append((None, item))
        elif isinstance(item, dict):
            if "value" in item and "system" in item:
                out.append((item["system"], str(item["value"])))
            if "code" in item:
                out.append((item.get("system"), item["code"]))
            out += [(c.get("system"), c.get("code", "")) for c in item.get("coding") or []]
    return out


def _matches(resource: dict[str, Any], kind: str, path: tuple[str, ...], value: str) -> bool:
    element = resource.get(path[0])
    if kind == REF:
        ref = (element or {}).get("reference", "")
        return any(ref == f"Patient/{v.removeprefix('Patient/')}" for v in value.split(","))
    if kind == TOKEN:
        found = _codes(element)
        for alternative in value.split(","):
            system, bar, code = alternative.rpartition("|")
            if any(c == code and (not bar or s == system) for s, c in found):
                return True
        return False
    prefix, day = (value[:2], value[2:]) if value[:2] in ("ge", "le", "gt", "lt", "eq") else ("eq", value)
    actual = str(element or "")[: len(day)]
    return {"ge": actual >= day, "le": actual <= day, "gt": actual > day, "lt": actual < day,
            "eq": actual == day}[prefix] if actual else False


def capability_statement(base: str) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1",
        "date": "2026-06-30", "format": ["json"], "implementation": {"description": "Test EHR", "url": base},
        "rest": [{
            "mode": "server", "searchParam": [{"name": "_id", "type": "token"}],
            "security": {"service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                  "restful-security-service", "code": "SMART-on-FHIR"}]}]},
            "resource": [{"type": t, "interaction": [{"code": "read"}, {"code": "search-type"}],
                          "searchParam": [{"name": n, "type": k} for n, (k, _) in params.items()]}
                         for t, params in PARAMS.items()],
        }],
    }


class Upstream:
    def __init__(self, data: Dataset, client_id: str | None = None, jwks: dict[str, Any] | None = None,
                 token_lifetime: int = 300, page_size: int = 10) -> None:
        self.data = data
        self.client_id = client_id
        self.keys = {k["kid"]: jwt.PyJWK(k, k.get("alg", "RS384")) for k in (jwks or {}).get("keys", [])}
        self.token_lifetime = token_lifetime
        self.page_size = page_size
        self.tokens: dict[str, float] = {}
        self.seen_jti: set[str] = set()
        self.stats: Counter[str] = Counter()

    @staticmethod
    def base(request: Request) -> str:
        return f"{str(request.base_url).rstrip('/')}/fhir"

    def authorised(self, request: Request) -> bool:
        if not self.keys:
            return True
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return self.tokens.get(token, 0) > time.time()

    def token(self, request: Request, form: dict[str, str]) -> Response:
        url = f"{str(request.base_url).rstrip('/')}/auth/token"
        if form.get("grant_type") != "client_credentials" or form.get("client_assertion_type") != \
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return Response(b'{"error":"invalid_request"}', 400, media_type="application/json")
        try:
            assertion = form["client_assertion"]
            key = self.keys[jwt.get_unverified_header(assertion)["kid"]]
            claims = jwt.decode(assertion, key, algorithms=["RS384"], audience=url, issuer=self.client_id,
                                options={"require": ["exp", "jti", "sub"]})
            if claims["sub"] != self.client_id or claims["jti"] in self.seen_jti:
                raise jwt.InvalidTokenError("bad sub or replayed jti")
        except (KeyError, jwt.InvalidTokenError):
            return Response(b'{"error":"invalid_client"}', 401, media_type="application/json")
        self.seen_jti.add(claims["jti"])
        token = secrets.token_urlsafe(24)
        self.tokens[token] = time.time() + self.token_lifetime
        body = {"access_token": token, "token_type": "bearer", "expires_in": self.token_lifetime,
                "scope": form.get("scope", "")}
        return Response(orjson.dumps(body), media_type="application/json")

    def answer(self, request: Request, body: dict[str, Any]) -> Response:
        raw = orjson.dumps(body)
        etag = f'W/"{hashlib.sha256(raw).hexdigest()[:16]}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return Response(raw, media_type=FHIR_JSON, headers={"ETag": etag})

    def search(self, request: Request, type_: str) -> Response:
        declared = PARAMS[type_]
        items = list(self.data.resources.get(type_, {}).values())
        count, offset = self.page_size, 0
        for name, value in request.query_params.multi_items():
            if name == "_count":
                count = max(1, min(int(value), 500))
            elif name == "_offset":
                offset = int(value)
            elif name == "_id":
                items = [r for r in items if r["id"] in value.split(",")]
            elif name in declared:
                kind, path = declared[name]
                items = [r for r in items if _matches(r, kind, path, value)]
            else:
                return outcome(400, f"Unknown search parameter {name} for {type_}")
        base = self.base(request)
        keep = [(k, v) for k, v in request.query_params.multi_items() if k != "_offset"]
        query = urlencode(keep)
        links = [{"relation": "self", "url": f"{base}/{type_}?{query}&_offset={offset}"}]
        if offset + count < len(items):
            links.append({"relation": "next", "url": f"{base}/{type_}?{query}&_offset={offset + count}"})
        page = items[offset: offset + count]
        return self.answer(request, {
            "resourceType": "Bundle", "type": "searchset", "total": len(items), "link": links,
            "entry": [{"fullUrl": f"{base}/{type_}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                      for r in page],
        })


def create_upstream(upstream: Upstream) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.upstream = upstream

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Response:
        upstream.stats[request.url.path] += 1
        if request.url.path.startswith("/fhir/") and not request.url.path.startswith(
                ("/fhir/metadata", "/fhir/.well-known")) and not upstream.authorised(request):
            return outcome(401, "a valid Bearer token is required")
        return await call_next(request)

    @app.get("/fhir/metadata")
    async def metadata(request: Request) -> Response:
        return Response(orjson.dumps(capability_statement(upstream.base(request))), media_type=FHIR_JSON)

    @app.get("/fhir/.well-known/smart-configuration")
    async def smart(request: Request) -> Response:
        root = str(request.base_url).rstrip("/")
        return Response(orjson.dumps({
            "token_endpoint": f"{root}/auth/token", "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384"],
            "scopes_supported": ["system/*.rs", "system/*.read"], "capabilities": ["client-confidential-asymmetric"],
        }), media_type="application/json")

    @app.post("/auth/token")
    async def token(request: Request) -> Response:
        form = await request.form()
        return upstream.token(request, {k: str(v) for k, v in form.items()})

    @app.post("/_control/revoke-tokens")
    async def revoke() -> Response:
        upstream.tokens.clear()
        return Response(status_code=204)

    @app.get("/_control/stats")
    async def stats() -> Response:
        return Response(orjson.dumps(dict(upstream.stats)), media_type="application/json")

    @app.get("/fhir/{type_}")
    async def search(type_: str, request: Request) -> Response:
        if type_ not in PARAMS:
            return outcome(404, f"Unknown resource type {type_}")
        return upstream.search(request, type_)

    @app.get("/fhir/{type_}/{id_}")
    async def read(type_: str, id_: str, request: Request) -> Response:
        resource = upstream.data.resources.get(type_, {}).get(id_)
        if resource is None:
            return outcome(404, f"{type_}/{id_} not found")
        return upstream.answer(request, resource)

    return app
