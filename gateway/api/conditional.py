"""Conditional interactions find their target by a search (R4 http.html#cond-update)."""

from __future__ import annotations

from urllib.parse import parse_qsl

from gateway.api.context import Ctx
from gateway.fhir.errors import FhirError


async def matching_ids(ctx: Ctx, type_: str, query: str, what: str) -> list[str]:
    """Ids of `type_` matching `query` that the principal may see; 400 when the query is empty,
    412 when it matches more than one resource (the client's criteria are not selective enough)."""
    params = [(k, v) for k, v in parse_qsl(query.lstrip("?"), keep_blank_values=True) if k]
    if not params:
        raise FhirError.of(400, "invalid", f"{what} needs search criteria, e.g. identifier=system|value")
    ids = await ctx.services.search.ids(type_, params, ctx.gate.restrict(ctx.principal), 2)
    if len(ids) > 1:
        raise FhirError.of(412, "multiple-matches", f"{what} criteria {query!r} match more than one {type_}; "
                           "make them more selective")
    return ids
