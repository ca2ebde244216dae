"""`Specimen/$destruction-list` — the specimens the lab must destroy: those of subjects whose
consent in force is a DESTROY withdrawal (issue 8). Hidden from every external principal;
listed here for internal biobank staff. Specimens the LIMS already reports DESTROYED are left out."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.access.consent import SOURCE_STATUS
from gateway.api.context import Operation, context
from gateway.api.staff_lists import listing, require_internal
from gateway.store import StoredResource

router = APIRouter()
OPERATION = Operation("destruction-list",
                      "https://biobank.massgeneral.org/fhir/OperationDefinition/destruction-list", ("Specimen",))


def _destroyed(stored: StoredResource) -> bool:
    return any(e.get("url") == SOURCE_STATUS and e.get("valueCoding", {}).get("code") == "DESTROYED"
               for e in stored.json().get("extension", []))


@router.get("/fhir/Specimen/$destruction-list", name="op-destruction-list")
async def destruction_list(request: Request) -> Response:
    ctx = await context(request)
    require_internal(ctx, "Specimen", "$destruction-list")
    found = await ctx.store.select(
        "Specimen", "compartment IN (SELECT patient FROM consent_state WHERE withdrawal_scope = 'DESTROY')")
    return await listing(ctx, [s for s in found if not _destroyed(s)], "/Specimen/$destruction-list")
