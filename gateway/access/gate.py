"""`restrict` before the store, `disclose` after it: the two questions of every interaction.

Modelled on HAPI's consent interceptor: one service asked, for every resource of every
response (bundle entries, includes, history, export lines, proxied answers), whether it
may be seen and what must change before it is. Handlers never call `disclose`
themselves: the response writers in `gateway.api.responses` do, so none can forget.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.access.principal import Principal
from gateway.access.scopes import READ, SEARCH
from gateway.fhir.errors import FhirError
from gateway.store import StoredResource

INTERACTION_ACTIONS = {
    "read": READ, "vread": READ, "search": SEARCH, "history": READ,
    "create": "c", "update": "u", "delete": "d", "validate": READ, "export": READ,
}


@dataclass(frozen=True, slots=True)
class Restriction:
    """What a query may touch, pushed into SQL so that pages, totals and counts leak nothing.

    `readable`: types whose resources may appear (matches, includes, chain and `_has` targets).
    `confined`: readable types granted by `patient/` scopes only: of those, only resources whose
    compartment is one of `compartments` (the launch patient) may appear. A resource outside any
    Patient compartment is not visible through a patient/ scope.
    """

    readable: frozenset[str]
    confined: frozenset[str] = frozenset()
    compartments: frozenset[str] = frozenset()

    def allows_type(self, type_: str) -> bool:
        return type_ in self.readable

    def compartment_filter(self, type_: str) -> frozenset[str] | None:
        """The Patients `type_` is confined to, or None when it is not confined."""
        return self.compartments if type_ in self.confined else None


def forbidden(principal: Principal, type_: str, interaction: str) -> FhirError:
    return FhirError.of(
        403, "forbidden",
        f"insufficient_scope: the token's scopes ({principal.scopes or 'none'}) do not allow {interaction} on {type_}",
        headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
    )


class Gate:
    def __init__(self, types: frozenset[str]) -> None:
        self.types = types

    def require(self, principal: Principal, type_: str, interaction: str) -> None:
        """Refuse (403) an interaction the principal's scopes do not grant on this type.

        Writes of owned resources are for internal principals only: collaborators never write.
        """
        action = INTERACTION_ACTIONS[interaction]
        if not principal.scopes.allows(type_, action):
            raise forbidden(principal, type_, interaction)
        if action in "cud" and not principal.internal:
            raise FhirError.of(403, "forbidden", "external principals may not write to the biobank")

    def restrict(self, principal: Principal, action: str = SEARCH) -> Restriction:
        readable = frozenset(t for t in self.types if principal.scopes.allows(t, action))
        confined = frozenset(t for t in readable if principal.scopes.patient_only(t, action))
        compartments = frozenset([principal.patient]) if principal.patient else frozenset()
        return Restriction(readable, confined, compartments)

    def visible(self, principal: Principal, stored: StoredResource) -> bool:
        """May this stored resource be seen at all by this principal (scope and compartment)?"""
        scopes = principal.scopes
        if not (scopes.allows(stored.type, READ) or scopes.allows(stored.type, SEARCH)):
            return False
        if scopes.patient_only(stored.type, READ) or scopes.patient_only(stored.type, SEARCH):
            return principal.patient is not None and stored.compartment == principal.patient
        return True

    def disclose(self, principal: Principal, stored: StoredResource) -> bytes | None:
        """The bytes this principal may receive for `stored`, or None when it must not leave."""
        if not self.visible(principal, stored):
            return None
        return stored.content
