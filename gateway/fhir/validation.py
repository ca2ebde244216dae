"""Base-R4 structural validation of a resource with fhir.resources (R4B models).

R4B's models of the types the gateway stores are structurally the same as R4's
(LIBRARIES.md); they do not check code bindings, which the profile validator does.
Errors name the element as a FHIRPath-like path (`Specimen.collection.quantity.value`)
so a client can find what to fix.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from pydantic import ValidationError

from gateway.fhir.errors import Issue

ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@cache
def _model(resource_type: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class

    return get_fhir_model_class(resource_type)


def _path(resource_type: str, loc: tuple[Any, ...]) -> str:
    out = resource_type
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "__root__":
            out += f".{part}"
    return out


def _diagnostic(error: dict[str, Any]) -> str:
    msg = str(error.get("msg", "invalid"))
    if error.get("type") == "extra_forbidden":
        return "Unknown element (not part of the R4 definition of this type)"
    return msg.removeprefix("Value error, ")


def structural_issues(resource: Any, expected_type: str | None = None) -> list[Issue]:
    """Issues that make `resource` not a valid FHIR R4 resource (empty list: valid)."""
    if not isinstance(resource, dict):
        return [Issue("error", "structure", "The body must be a JSON object holding a FHIR resource")]
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        return [Issue("error", "required", "resourceType is missing", ("resourceType",))]
    if expected_type is not None and rtype != expected_type:
        return [Issue("error", "invalid",
                      f"resourceType {rtype!r} does not match the endpoint's type {expected_type!r}",
                      ("resourceType",))]
    rid = resource.get("id")
    if rid is not None and (not isinstance(rid, str) or not ID_PATTERN.match(rid)):
        return [Issue("error", "value", "id must be 1-64 characters of A-Z a-z 0-9 - .", (f"{rtype}.id",))]
    try:
        model = _model(rtype)
    except (KeyError, ValueError, AttributeError):
        return [Issue("error", "not-supported", f"Unknown resource type {rtype!r}", ("resourceType",))]
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        return [
            Issue("error", "structure", _diagnostic(e), (_path(rtype, tuple(e.get("loc", ()))),))
            for e in exc.errors()
        ]
    return []
