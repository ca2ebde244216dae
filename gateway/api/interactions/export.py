"""Bulk Data export — https://hl7.org/fhir/uv/bulkdata/export.html (Bulk Data Access IG v2).

Kick-off (`$export` at system, Patient and Group level, GET or POST with a Parameters body),
status polling and cancel (`$export-status/{job}`) and file download (`$export-file/...`).
Thin: HTTP in, `gateway.bulk` does the work. Every route authenticates; jobs and files are
visible to the client that started them only.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from gateway.access.principal import Principal
from gateway.api.body import read_json
from gateway.api.context import services_of
from gateway.api.responses import fhir_response, information
from gateway.bulk.jobs import TooManyJobs
from gateway.bulk.request import Kind, authorise, parse
from gateway.bulk.service import Exports
from gateway.fhir.errors import FhirError
from gateway.fhir.instant import to_http_date
from gateway.fhir.negotiation import NDJSON
from gateway.fhir.prefer import Prefer

router = APIRouter()
_KICK_OFF = ["GET", "POST"]


def exports_of(request: Request) -> Exports:
    return request.app.state.exports


async def _principal(request: Request) -> Principal:
    return await services_of(request).authenticate(request)


def _require_async_json(request: Request, prefer: Prefer) -> None:
    """The IG's two required kick-off headers; 400 with an OperationOutcome without them."""
    accept = [m.split(";", 1)[0].strip().lower() for m in request.headers.get("accept", "").split(",")]
    if "application/fhir+json" not in accept:
        raise FhirError.of(400, "invalid", "a $export kick-off needs the header Accept: application/fhir+json")
    if not prefer.respond_async:
        raise FhirError.of(400, "invalid", "a $export kick-off needs the header Prefer: respond-async")


def _parameter_value(parameter: dict[str, Any]) -> str:
    for key, value in parameter.items():
        if key.startswith("value"):
            return value.get("reference", "") if isinstance(value, dict) else str(value)
    raise FhirError.of(400, "invalid", f"Parameters.parameter {parameter.get('name')!r} has no value[x]")


async def _params(request: Request) -> list[tuple[str, str]]:
    """Query parameters, and for POST those of the Parameters body (IG v2, "POST kick-off")."""
    params = list(request.query_params.multi_items())
    if request.method == "POST":
        body = await read_json(request, services_of(request).settings.max_body_bytes)
        if body.get("resourceType") != "Parameters":
            raise FhirError.of(400, "invalid", "a POST $export body must be a Parameters resource")
        params += [(p.get("name", ""), _parameter_value(p)) for p in body.get("parameter") or []]
    return params


def _public_url(request: Request, base: str) -> str:
    """The kick-off as the client addressed it, for the manifest's `request` (a POST's body is not in it)."""
    query = f"?{request.url.query}" if request.url.query else ""
    return f"{base}{request.url.path.removeprefix('/fhir')}{query}"


async def _kick_off(request: Request, kind: Kind, group_id: str | None = None) -> Response:
    principal = await _principal(request)
    prefer = Prefer.parse(request.headers.get("prefer"))
    _require_async_json(request, prefer)
    exports = exports_of(request)
    names = services_of(request).gate.translator(principal)
    try:
        export = parse(kind, _public_url(request, exports.base), await names.params(await _params(request)),
                       strict=prefer.handling == "strict", group_id=group_id)
        job = await exports.kick_off(principal, authorise(principal, export))
    except FhirError as exc:  # may echo a parameter: in the principal's words
        raise names.error(exc) from None
    except TooManyJobs as exc:
        raise FhirError.of(429, "throttled", f"client {principal.client_id} already runs "
                           f"{exports.config.max_jobs_per_client} export jobs; wait for one to finish or cancel one",
                           headers={"Retry-After": str(exports.config.retry_after * 5)}) from exc
    return fhir_response(information(f"export job {job.id} accepted; poll its Content-Location"), 202,
                         {"Content-Location": exports.status_url(job)})


@router.api_route("/fhir/$export", methods=_KICK_OFF, name="export-system")
async def system(request: Request) -> Response:
    return await _kick_off(request, "system")


@router.api_route("/fhir/Patient/$export", methods=_KICK_OFF, name="export-patient")
async def patient(request: Request) -> Response:
    return await _kick_off(request, "patient")


@router.api_route("/fhir/Group/{id}/$export", methods=_KICK_OFF, name="export-group")
async def group(id: str, request: Request) -> Response:
    return await _kick_off(request, "group", group_id=id)


@router.get("/fhir/$export-status/{job_id}", name="export-status")
async def status(job_id: str, request: Request) -> Response:
    principal = await _principal(request)
    exports = exports_of(request)
    job = await exports.job_of(principal, job_id)
    if job.active:
        return Response(status_code=202, headers={"X-Progress": exports.progress(job),
                                                  "Retry-After": str(exports.config.retry_after)})
    if job.status == "failed":
        raise FhirError.of(500, "exception", job.error or "the export failed")
    headers = {"Expires": to_http_date(job.expires_at)} if job.expires_at else {}
    manifest = exports.manifest(job, await exports.files(job))
    return Response(orjson.dumps(manifest), 200, headers, media_type="application/json")


@router.delete("/fhir/$export-status/{job_id}", name="export-cancel")
async def cancel(job_id: str, request: Request) -> Response:
    principal = await _principal(request)
    await exports_of(request).cancel(principal, job_id)
    return fhir_response(information(f"export job {job_id} cancelled; its files are deleted"), 202)


@router.get("/fhir/$export-file/{job_id}/{name}", name="export-file")
async def download(job_id: str, name: str, request: Request) -> Response:
    principal = await _principal(request)
    path = await exports_of(request).file_path(principal, job_id, name)
    return FileResponse(path, media_type=NDJSON)
