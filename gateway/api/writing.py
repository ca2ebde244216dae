"""What every write does before the store sees it: validate (base R4, then the profiles the
resource claims) and map store conflicts to HTTP. Shared by the single interactions and the
entries of batch/transaction Bundles."""

from __future__ import annotations

from typing import Any

from gateway.api.context import Ctx
from gateway.fhir.errors import FhirError, has_errors
from gateway.fhir.validation import structural_issues
from gateway.store import VersionConflict


def checked(ctx: Ctx, resource: Any, type_: str) -> dict[str, Any]:
    """The resource, if it is valid FHIR R4 (400 otherwise) and meets its profiles (422 otherwise)."""
    issues = structural_issues(resource, type_)
    if issues:
        raise FhirError(400, issues)
    profile_issues = ctx.services.validate(resource, None)
    if has_errors(profile_issues):
        raise FhirError(422, profile_issues)
    return resource


def conflict(exc: VersionConflict, if_match: int | None) -> FhirError:
    """412 when the client's If-Match named another version; 409 when a concurrent writer won."""
    if if_match is not None:
        return FhirError.of(412, "conflict", f"If-Match version {if_match} does not match the current version "
                            f"{exc.current}; read the resource again and retry")
    return FhirError.of(409, "conflict", "The resource was changed by another request at the same time; retry")


def parse_if_match(value: str | None) -> int | None:
    """`W/"3"` (or `"3"`, or `3`) -> 3; a malformed value is a 400."""
    if value is None:
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise FhirError.of(400, "value", f"If-Match {value!r} is not a version ETag such as W/\"3\"")
    return int(text)
