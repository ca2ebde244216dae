"""`$validate` — https://hl7.org/fhir/R4/resource-operation-validate.html.

Validates a resource (the body, or the `resource` part of a Parameters body) against base
R4 and the biobank profiles it claims, plus `profile` when given. Needs read scope on the
type; stores nothing. The answer is always an OperationOutcome with status 200 (the
validation itself succeeded); its issues say whether the resource is valid.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.body import read_json
from gateway.api.context import Operation, context, stored_type
from gateway.api.responses import fhir_response
from gateway.fhir.errors import FhirError, Issue, operation_outcome
from gateway.fhir.validation import structural_issues
from gateway.served import OWNED_TYPES

router = APIRouter()
OPERATION = Operation("validate", "http://hl7.org/fhir/OperationDefinition/Resource-validate", OWNED_TYPES)


def _unwrap(body: Any, profile: str | None) -> tuple[Any, str | None]:
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        parts = {p.get("name"): p for p in body.get("parameter") or []}
        if "resource" not in parts:
            raise FhirError.of(400, "required", "The Parameters body has no 'resource' parameter")
        profile = profile or (parts.get("profile") or {}).get("valueUri") or \
            (parts.get("profile") or {}).get("valueCanonical")
        return parts["resource"].get("resource"), profile
    return body, profile


@router.post("/fhir/{type}/$validate", name="op-validate")
async def validate(type: str, request: Request) -> Response:
    ctx = await context(request)
    ctx.gate.require(ctx.principal, stored_type(type), "validate")
    body = await read_json(request, ctx.services.settings.max_body_bytes)
    resource, profile = _unwrap(body, request.query_params.get("profile"))
    issues = structural_issues(resource, type)
    if not issues:
        issues = ctx.services.validate(resource, profile)
    if not any(i.severity in ("error", "fatal") for i in issues):
        issues = [*issues, Issue("information", "informational", "Validation passed: no errors")]
    return fhir_response(orjson.dumps(operation_outcome(issues)))
