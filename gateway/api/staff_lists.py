"""What the biobank's own staff lists need: internal principals only, a searchset of stored
resources through the gate, no paging (the lists are short by nature)."""

from __future__ import annotations

from starlette.responses import Response

from gateway.api.context import Ctx
from gateway.api.responses import fhir_response, searchset_bytes
from gateway.fhir.errors import FhirError
from gateway.store import StoredResource


def require_internal(ctx: Ctx, type_: str, what: str) -> None:
    ctx.gate.require(ctx.principal, type_, "search")
    if not ctx.principal.internal:
        raise FhirError.of(403, "forbidden", f"{what} is for the biobank's internal staff only")


async def listing(ctx: Ctx, matches: list[StoredResource], path: str) -> Response:
    body = await searchset_bytes(ctx, matches, [], total=len(matches), links=[("self", f"{ctx.base}{path}")])
    return fhir_response(body)
