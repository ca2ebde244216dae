"""Reading a request body as a FHIR resource: size limit (413), media type (415), JSON (400)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from gateway.fhir.errors import FhirError
from gateway.fhir.negotiation import check_body_type


async def read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    check_body_type(request.headers.get("content-type"))
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise FhirError.of(400, "structure", "The request body is empty: send a FHIR resource as JSON")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise FhirError.of(400, "structure", f"The request body is not valid JSON: {exc}") from exc


def _too_large(limit: int) -> FhirError:
    return FhirError.of(413, "too-costly", f"The request body exceeds the limit of {limit} bytes")
