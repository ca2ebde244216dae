"""Every error a client sees is an OperationOutcome with the status that fits — this module
is the one place where exceptions become responses."""

from __future__ import annotations

import structlog
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.responses import outcome_response
from gateway.fhir.errors import FhirError

log = structlog.get_logger("gateway.errors")

_HTTP_CODES = {404: "not-found", 405: "not-supported", 413: "too-costly", 415: "not-supported"}


async def _fhir_error(request: Request, exc: Exception) -> Response:
    """Diagnostics may echo what the request asked for: in the principal's words (per-collaborator pseudonyms)."""
    assert isinstance(exc, FhirError)
    ctx = getattr(request.state, "fhir", None)
    return outcome_response(ctx.names.error(exc) if ctx is not None else exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    text = {404: f"No FHIR endpoint at {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}"}.get(exc.status_code, str(exc.detail))
    headers = dict(exc.headers or {})
    return outcome_response(FhirError.of(exc.status_code, _HTTP_CODES.get(exc.status_code, "processing"), text,
                                         headers=headers))


async def _validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    text = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors())
    return outcome_response(FhirError.of(400, "invalid", text or "Invalid request"))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", path=request.url.path, method=request.method)
    return outcome_response(FhirError.of(500, "exception", "Internal server error; the incident was logged"))


def install(app: FastAPI) -> None:
    app.add_exception_handler(FhirError, _fhir_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
