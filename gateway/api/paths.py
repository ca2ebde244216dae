"""Path convertors that make the hot routes precise, so they can be matched first, and the
plain route class of the hot routes.

`/fhir/{type:stored}/{id:fhirid}` matches only a stored resource type and a valid FHIR id:
`/fhir/Condition/1` (proxied), `/fhir/Specimen/_history` and `/fhir/$export-status/x` do
not, so the read route needs no other route in front of it.
"""

from __future__ import annotations

from starlette.convertors import Convertor, register_url_convertor
from starlette.routing import Match, Route
from starlette.types import Scope

from gateway.served import STORED_TYPES


class _Text(Convertor[str]):
    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


class StoredType(_Text):
    regex = "(?:" + "|".join(sorted(STORED_TYPES)) + ")"


class FhirId(_Text):
    regex = r"[A-Za-z0-9\-.]{1,64}"


register_url_convertor("stored", StoredType())
register_url_convertor("fhirid", FhirId())


class HotRoute(Route):
    """A Starlette route (no FastAPI dependency solving) that, like FastAPI's, leaves itself in
    `scope["route"]`, where the request log and the audit read the interaction's name."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child
