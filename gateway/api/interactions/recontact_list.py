"""`Patient/$recontact-list` — the subjects the biobank may contact again: consent in force
permits re-contact and no withdrawal of any scope (NO_CONTACT included) is in effect.
Internal staff only."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.api.context import Operation, context
from gateway.api.staff_lists import listing, require_internal
from gateway.fhir.instant import now_us

router = APIRouter()
OPERATION = Operation("recontact-list",
                      "https://biobank.massgeneral.org/fhir/OperationDefinition/recontact-list", ("Patient",))


@router.get("/fhir/Patient/$recontact-list", name="op-recontact-list")
async def recontact_list(request: Request) -> Response:
    ctx = await context(request)
    require_internal(ctx, "Patient", "$recontact-list")
    now = now_us()
    found = await ctx.store.select(
        "Patient", "id IN (SELECT patient FROM consent_state WHERE recontact = ? AND source_status = 'ACTIVE' "
        "AND (expires_us IS NULL OR expires_us > ?) AND (withdrawal_scope IS NULL OR withdrawn_us > ?))",
        (True, now, now))
    return await listing(ctx, found, "/Patient/$recontact-list")
