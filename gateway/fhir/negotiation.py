"""Content negotiation (FHIR R4 http.html#mime-type): `_format` wins over `Accept`.

The gateway speaks JSON only; asking for XML (or anything that excludes JSON) is
answered 406 with an OperationOutcome — in JSON, the one format it has.
"""

from __future__ import annotations

from gateway.fhir.errors import FhirError

FHIR_JSON = "application/fhir+json; charset=utf-8"
NDJSON = "application/fhir+ndjson"
_JSON_FORMATS = {"json", "application/json", "application/fhir+json", "application/json+fhir"}
_ANY = {"*/*", "application/*"}
_BODY_TYPES = {"application/fhir+json", "application/json", "application/json+fhir"}


def _media_types(header: str) -> list[str]:
    return [part.split(";", 1)[0].strip().lower() for part in header.split(",") if part.strip()]


def negotiate(format_param: str | None, accept: str | None) -> None:
    """Raise 406 unless the client accepts FHIR JSON."""
    if format_param:
        if format_param.split(";", 1)[0].strip().lower() not in _JSON_FORMATS:
            raise FhirError.of(406, "not-supported", f"_format={format_param} is not supported: this server speaks "
                               "application/fhir+json only")
        return
    if not accept:
        return
    wanted = _media_types(accept)
    if not wanted or any(m in _JSON_FORMATS or m in _ANY for m in wanted):
        return
    raise FhirError.of(406, "not-supported", f"Accept: {accept} cannot be served: this server speaks "
                       "application/fhir+json only")


def check_body_type(content_type: str | None) -> None:
    """Raise 415 unless a request body is declared as FHIR JSON."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in _BODY_TYPES:
        raise FhirError.of(415, "not-supported", f"Content-Type {content_type or '(none)'} is not supported: "
                           "send application/fhir+json")
