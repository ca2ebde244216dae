"""`$biobank-availability` — feasibility counts with small-cell suppression
(profiles/OperationDefinition-biobank-availability.json).

Any principal allowed to search Specimens may ask; no identity is ever returned, only
counts; for external principals only consenting subjects count (the restriction's consent
condition), as for every other answer.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.access.consent import PERMISSIONS
from gateway.access.feasibility import DIMENSIONS, Answer, Cell, Question, availability
from gateway.api.body import read_json
from gateway.api.context import Ctx, Operation, context
from gateway.api.responses import fhir_response
from gateway.fhir.errors import FhirError
from gateway.fhir.instant import now_us

router = APIRouter()
OPERATION = Operation("biobank-availability",
                      "https://biobank.massgeneral.org/fhir/OperationDefinition/biobank-availability")
DIMENSION_SYSTEM = "https://biobank.massgeneral.org/fhir/availability-dimension"


def _question(pairs: list[tuple[str, str]]) -> Question:
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        values.setdefault(name, []).extend(v for v in value.split(",") if v)
    unknown = set(values) - {"specimen-type", "genotyped", "consented-for", "study", "group-by", "_format"}
    if unknown:
        raise FhirError.of(400, "not-supported", f"unknown parameter(s) {', '.join(sorted(unknown))}")
    genotyped = values.get("genotyped", [None])[-1]
    if genotyped not in (None, "true", "false"):
        raise FhirError.of(400, "value", f"genotyped must be true or false, got {genotyped!r}")
    kinds = set(values.get("consented-for", []))
    if kinds - set(PERMISSIONS):
        raise FhirError.of(400, "code-invalid", f"consented-for must be among {', '.join(PERMISSIONS)}")
    group_by = tuple(dict.fromkeys(values.get("group-by", [])))
    if set(group_by) - set(DIMENSIONS):
        raise FhirError.of(400, "code-invalid", f"group-by must be among {', '.join(DIMENSIONS)}")
    return Question(tuple(values.get("specimen-type", [])), None if genotyped is None else genotyped == "true",
                    frozenset(kinds), tuple(values.get("study", [])), group_by)


def _parameters_pairs(body: Any) -> list[tuple[str, str]]:
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FhirError.of(400, "invalid", "POST a Parameters resource (or use GET with query parameters)")
    pairs = []
    for p in body.get("parameter") or []:
        value = next((v for k, v in p.items() if k.startswith("value")), None)
        if isinstance(value, dict):  # valueCoding
            value = value.get("code")
        pairs.append((p.get("name", ""), str(value).lower() if isinstance(value, bool) else str(value)))
    return pairs


def _stratum(dimensions: tuple[str, ...], cell: Cell, threshold: int) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"name": "dimension", "valueCoding": {"system": f"{DIMENSION_SYSTEM}/{dim}", "code": value}}
        for dim, value in zip(dimensions, cell.key, strict=True)]
    if not cell.suppressed:
        parts.append({"name": "count", "valueInteger": cell.count})
    parts.append({"name": "suppressed", "valueBoolean": cell.suppressed})
    parts.append({"name": "display", "valueString": f"<{threshold}" if cell.suppressed else str(cell.count)})
    return {"name": "stratum", "part": parts}


def _parameters(answer: Answer) -> dict[str, Any]:
    strata = [_stratum(answer.dimensions, c, answer.threshold) for c in answer.cells] if answer.dimensions else []
    strata.append(_stratum((), answer.total, answer.threshold))
    return {"resourceType": "Parameters", "parameter": [*strata, {"name": "threshold",
                                                                  "valueInteger": answer.threshold}]}


async def _answer(ctx: Ctx, pairs: list[tuple[str, str]]) -> Response:
    ctx.gate.require(ctx.principal, "Specimen", "search")
    question = _question(pairs)
    answer = await availability(ctx.store.db, question, ctx.gate.restrict(ctx.principal), now_us(),
                                ctx.services.settings.feasibility_threshold)
    return fhir_response(orjson.dumps(_parameters(answer)))


@router.get("/fhir/$biobank-availability", name="op-biobank-availability")
async def get(request: Request) -> Response:
    return await _answer(await context(request), list(request.query_params.multi_items()))


@router.post("/fhir/$biobank-availability", name="op-biobank-availability-post")
async def post(request: Request) -> Response:
    ctx = await context(request)
    body = await read_json(request, ctx.services.settings.max_body_bytes)
    return await _answer(ctx, _parameters_pairs(body))
