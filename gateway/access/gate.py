"""`restrict` before the store, `disclose` after it: the two questions of every interaction.

Modelled on HAPI's consent interceptor: one service asked, for every resource of every
response (bundle entries, includes, history, export lines, proxied answers), whether it
may be seen and what must change before it is. Handlers never call `disclose`
themselves: the response writers in `gateway.api.responses` do, so none can forget.

Internal principals are governed by scopes only and get the stored bytes untouched (the
fast path). External principals additionally need the subject's consent in force to
permit research use and external sharing (and commercial use for commercial clients),
and get pseudonymised copies; genotyping details only where genetic research is permitted.
With per-collaborator pseudonyms on (`pseudonyms`), every subject code in those copies is
the client's own pseudonym, recorded before the copies leave so the client can use it
(`translator` turns what the client writes back into subject codes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.access import consent
from gateway.access.consent import Decision
from gateway.access.principal import Principal
from gateway.access.pseudonymise import Plan, Rename, plan, rename_references, rules
from gateway.access.pseudonyms import Pseudonyms, Renaming
from gateway.access.scopes import READ, SEARCH
from gateway.access.translation import PLAIN, Pseudonymous, Translator
from gateway.fhir.errors import FhirError
from gateway.fhir.instant import now_us
from gateway.store import Store, StoredResource

INTERACTION_ACTIONS = {
    "read": READ, "vread": READ, "search": SEARCH, "history": READ,
    "create": "c", "update": "u", "delete": "d", "validate": READ, "export": READ,
}
EXTERNAL_NEEDS = frozenset({"research", "external-sharing"})
INTERNAL_ONLY = frozenset({"AuditEvent", "Provenance"})
"""Types no external principal reads, whatever its scopes: the audit trail names other clients, and a
load's Provenance names every subject loaded, consented to sharing or not."""


def required_permissions(principal: Principal, kind: str = "specimen") -> frozenset[str]:
    """The consent permissions an external principal needs for data of `kind` (specimen | ehr)."""
    needs = set(EXTERNAL_NEEDS)
    if principal.commercial:
        needs.add("commercial")
    if kind == "ehr":
        needs.add("ehr-linkage")
    return frozenset(needs)


@dataclass(frozen=True, slots=True)
class Restriction:
    """What a query may touch, pushed into SQL so that pages, totals and counts leak nothing.

    `readable`: types whose resources may appear (matches, includes, chain and `_has` targets).
    `confined`: readable types granted by `patient/` scopes only: of those, only resources whose
    compartment is one of `compartments` (the launch patient) may appear. A resource outside any
    Patient compartment is not visible through a patient/ scope.
    `consent`: for external principals, the permissions a subject's consent in force must grant
    (at `at_us`) for resources in that subject's compartment to appear; empty for internal ones.
    `hidden_systems`: identifier systems the principal never sees (the MRN, for external ones), so
    no search may match on them either: `Patient?identifier=MGH-...` would otherwise tell a
    collaborator which biobank subject a hospital patient is, even with the MRN removed from the answer.
    """

    readable: frozenset[str]
    confined: frozenset[str] = frozenset()
    compartments: frozenset[str] = frozenset()
    consent: frozenset[str] = frozenset()
    at_us: int = 0
    hidden_systems: frozenset[str] = frozenset()

    def allows_type(self, type_: str) -> bool:
        return type_ in self.readable

    def compartment_filter(self, type_: str) -> frozenset[str] | None:
        """The Patients `type_` is confined to, or None when it is not confined."""
        return self.compartments if type_ in self.confined else None

    def consent_sql(self, column: str = "compartment", joined: str | None = None) -> tuple[str, list[Any]] | None:
        """SQL keeping rows whose compartment's consent allows this principal, or None (no condition).
        Rows without a compartment (studies, organisations) are not about a subject and pass. `joined`: the
        alias of the subject's `consent_state` row where the statement joins it already (search pages read
        the decision beside each resource): the same condition on that row, instead of a lookup of its own."""
        if not self.consent:
            return None
        if joined is not None:
            conditions, params = consent.sharing_conditions(self.consent, self.at_us, joined)
            return f"({column} IS NULL OR ({conditions}))", params
        clause, params = consent.sharing_clause(self.consent, self.at_us, column)
        return f"({column} IS NULL OR {clause})", params


@dataclass(frozen=True, slots=True)
class Decided(StoredResource):
    """A resource read in the same statement as its subject's consent decision (`decision`, None: the
    subject has none), as search reads pages and includes for a principal restricted by consent: the gate
    takes the decision from here instead of looking every subject of the page up again (one statement
    less per search). It is the decision the statement's own consent condition saw, of the same request."""

    decision: Decision | None = None


_RESTRICTIONS_KEPT = 4096
"""Principals' restrictions `Gate.restrict` keeps (a `patient/` token's differ by patient); then it starts over."""


def forbidden(principal: Principal, type_: str, interaction: str) -> FhirError:
    return FhirError.of(
        403, "forbidden",
        f"insufficient_scope: the token's scopes ({principal.scopes or 'none'}) do not allow {interaction} on {type_}",
        headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
    )


class Gate:
    def __init__(self, types: frozenset[str], store: Store, pseudonyms: Pseudonyms | None = None) -> None:
        self.types = types
        self.store = store
        self.pseudonyms = pseudonyms
        self._restrictions: dict[tuple[object, ...], tuple[frozenset[str], ...]] = {}
        self._copies = _Copies()

    def translator(self, principal: Principal) -> Translator:
        """How this principal's subject ids translate, for one request."""
        if self.pseudonyms is None or principal.internal:
            return PLAIN
        return Pseudonymous(self.pseudonyms, principal.client_id)

    def _renaming(self, principal: Principal) -> Renaming | None:
        return None if self.pseudonyms is None else self.pseudonyms.renaming(principal.client_id)

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
        key = (principal.scopes, principal.audience, principal.patient, principal.commercial, action)
        if (known := self._restrictions.get(key)) is None:
            if len(self._restrictions) >= _RESTRICTIONS_KEPT:
                self._restrictions.clear()
            known = self._restrictions[key] = self._restriction(principal, action)
        return Restriction(*known[:4], now_us(), known[4])

    def _restriction(self, principal: Principal, action: str) -> tuple[frozenset[str], ...]:
        """A restriction's parts but its time, which depend only on the principal's scopes, kind and patient:
        asked of every type on each request they were 2% of a search's CPU, so `restrict` keeps them."""
        readable = frozenset(t for t in self.types if principal.scopes.allows(t, action)
                             and (principal.internal or t not in INTERNAL_ONLY))
        confined = frozenset(t for t in readable if principal.scopes.patient_only(t, action))
        compartments = frozenset([principal.patient]) if principal.patient else frozenset()
        needs = frozenset() if principal.internal else required_permissions(principal)
        hidden = frozenset() if principal.internal else rules().identifier_systems
        return readable, confined, compartments, needs, hidden

    def visible(self, principal: Principal, stored: StoredResource) -> bool:
        """Scope and compartment: may this principal see resources like `stored` at all?"""
        return _in_scope(_type_scope(principal, stored.type), principal, stored)

    async def decisions(self, patients: set[str]) -> dict[str, Decision]:
        return await consent.decisions(self.store.db, patients) if patients else {}

    @staticmethod
    def _released(needs: frozenset[str], compartment: str | None, decision: Decision | None,
                  at_us: int) -> Decision | bool | None:
        """False when consent forbids release (`needs`: required_permissions; `decision`: the subject's, None
        when it has none); else the decision (None: not about a subject)."""
        if compartment is None:
            return None
        if decision is None or not decision.permits_all(needs, at_us):
            return False
        return decision

    async def disclose(self, principal: Principal, stored: StoredResource) -> bytes | None:
        """The bytes this principal may receive for `stored`, or None when it must not leave."""
        return (await self.disclose_many(principal, [stored]))[0]

    async def disclose_many(self, principal: Principal, items: Sequence[StoredResource]) -> list[bytes | None]:
        """`disclose` for a page of resources, with one consent lookup for the subjects whose decision did
        not come with their resource (`Decided`): none for a search page."""
        if principal.internal:
            return [s.content if self.visible(principal, s) else None for s in items]
        decisions = await self.decisions({s.compartment for s in items if s.compartment and not isinstance(s, Decided)})
        at = now_us()
        needs = required_permissions(principal, "specimen")
        renaming = self._renaming(principal)
        scopes: dict[str, Scope] = {}
        out: list[bytes | None] = []
        for stored in items:
            scope = scopes.get(stored.type)
            if scope is None:
                scope = scopes[stored.type] = _type_scope(principal, stored.type)
            decision = stored.decision if isinstance(stored, Decided) else decisions.get(stored.compartment or "")
            released = self._released(needs, stored.compartment, decision, at) \
                if _in_scope(scope, principal, stored) else False
            if released is False:
                out.append(None)
                continue
            genetic = _genetic(released, at)
            if stored.type == _GROUP:
                rules = plan(stored.type, stored.content, genetic_allowed=genetic, renaming=renaming is not None)
                out.append(await self._group_bytes(stored.content, rules, at, renaming))
            elif renaming is None:
                out.append(self._copies.external(stored.type, stored.content, genetic))
            else:
                out.append(_external_bytes(stored.type, stored.content, genetic, renaming))
        if renaming is not None:
            await renaming.record()
        return out

    async def _group_bytes(self, content: bytes, rules: Plan, at: int, renaming: Renaming | None) -> bytes:
        """The external copy of a stored cohort (its members are checked against their own consents)."""
        resource = orjson.loads(content)
        if not await self._external_copy(resource, rules, at, renaming):
            return content
        return _serialised(resource, rules, renaming)

    async def _external_copy(self, resource: dict[str, Any], rules: Plan, at: int, rename: Rename | None) -> bool:
        """Change `resource` into its external copy; True when something changed."""
        members_changed = resource.get("resourceType") == _GROUP and await self._keep_released_members(resource, at)
        return rules.apply(resource, rename) or members_changed

    async def _keep_released_members(self, group: dict[str, Any], at: int) -> bool:
        """A cohort shown to a collaborator lists (and counts) only members whose consent allows it; True
        when that changed it."""
        members = group.get("member") or []
        ids = {m.get("entity", {}).get("reference", "").removeprefix("Patient/") for m in members}
        decisions = await self.decisions({i for i in ids if i})
        kept = [m for m in members
                if (d := decisions.get(m.get("entity", {}).get("reference", "").removeprefix("Patient/")))
                and d.permits_all(EXTERNAL_NEEDS, at)]
        changed = len(kept) != len(members)
        if changed and kept:
            group["member"] = kept
        elif changed:
            del group["member"]
        if "quantity" in group and group["quantity"] != len(kept):
            group["quantity"] = len(kept)
            changed = True
        return changed

    async def disclose_resource(self, principal: Principal, resource: dict[str, Any], patient: str | None,
                                kind: str = "ehr") -> dict[str, Any] | None:
        """For resources that are not stored here (EHR answers): scopes (with v2 granular
        constraints), compartment, consent of `patient` for data of `kind`, pseudonymisation."""
        rtype = resource.get("resourceType", "")
        stored = StoredResource(rtype, resource.get("id", ""), 0, 0, False, patient, b"")
        if not self.visible(principal, stored) or not self._granular_ok(principal, rtype, resource):
            return None
        if principal.internal:
            return resource
        at = now_us()
        decisions = await self.decisions({patient} if patient else set())
        released = self._released(required_permissions(principal, kind), patient, decisions.get(patient or ""), at) \
            if patient else False
        if released is False:
            return None
        renaming = self._renaming(principal)
        rules = plan(rtype, None, genetic_allowed=_genetic(released, at), renaming=renaming is not None)
        await self._external_copy(resource, rules, at, renaming)
        if renaming is None:
            return resource
        copy = orjson.loads(rename_references(orjson.dumps(resource), renaming))
        await renaming.record()
        return copy

    @staticmethod
    def _granular_ok(principal: Principal, rtype: str, resource: dict[str, Any]) -> bool:
        """SMART v2 granular scopes (`Observation.rs?category=laboratory`): token parameters matched
        against the resource's codings of the element of the same name."""
        alternatives = principal.scopes.constraints(rtype, READ) or principal.scopes.constraints(rtype, SEARCH)
        if alternatives is None:
            return True
        return any(all(_has_code(resource.get(name), value) for name, value in constraint)
                   for constraint in alternatives)


_GENETIC = frozenset({"genetic"})
_GROUP = "Group"
"""The one type whose external copy depends on more than its own bytes: a cohort lists consenting members only."""


class _Copies:
    """External copies made lately, by (type, genotyping released, stored bytes): with subject codes (no
    per-collaborator pseudonyms) the copy is a function of those alone — the plan is made from the type, the
    genetic permission and the bytes, the walk and its label from the plan and the bytes — so the same version
    leaving again, for any collaborator with the same genetic permission, is the copy made before. Measured
    over search pages: ~10 us per entry to parse, walk and serialise, ~1 us to find it here. Kept: the last
    COPIES_KEPT made (~2 kB each; a copy found is not made again, so the oldest made goes first)."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, bool, bytes], bytes] = {}

    def external(self, rtype: str, content: bytes, genetic: bool) -> bytes:
        key = (rtype, genetic, content)
        copy = self._made.get(key)
        if copy is None:
            copy = _external_bytes(rtype, content, genetic, None)
            if len(self._made) >= COPIES_KEPT:
                del self._made[next(iter(self._made))]
            self._made[key] = copy
        return copy


COPIES_KEPT = 8192


def _external_bytes(rtype: str, content: bytes, genetic: bool, renaming: Renaming | None) -> bytes:
    """The external copy of a stored resource other than a Group (its stored bytes when nothing changed, left
    unparsed when its plan says nothing can change: Plan.changes)."""
    rules = plan(rtype, content, genetic_allowed=genetic, renaming=renaming is not None)
    if not rules.changes(content):
        return content
    resource = orjson.loads(content)
    if not rules.apply(resource, renaming, content):
        return content
    return _serialised(resource, rules, renaming)


def _serialised(resource: dict[str, Any], rules: Plan, renaming: Renaming | None) -> bytes:
    """A changed external copy's bytes, its references to subjects renamed when `renaming`."""
    copy = orjson.dumps(resource)
    return rename_references(copy, renaming) if renaming is not None and rules.references else copy


Scope = tuple[bool, bool]
"""What scopes say of a type: (readable at all, only in the principal's patient compartment)."""


def _type_scope(principal: Principal, type_: str) -> Scope:
    """What of `visible` depends on the type alone: a page asks it once per type, not once per entry."""
    scopes = principal.scopes
    if not (scopes.allows(type_, READ) or scopes.allows(type_, SEARCH)):
        return False, False
    if type_ in INTERNAL_ONLY and not principal.internal:
        return False, False
    return True, scopes.patient_only(type_, READ) or scopes.patient_only(type_, SEARCH)


def _in_scope(scope: Scope, principal: Principal, stored: StoredResource) -> bool:
    """`visible`, given what scopes say of the resource's type."""
    readable, confined = scope
    if confined:
        return principal.patient is not None and stored.compartment == principal.patient
    return readable


def _genetic(decision: Decision | None, at: int) -> bool:
    """Genotyping details are released only for subjects whose consent permits genetic research."""
    return decision is not None and decision.permits_all(_GENETIC, at)


def _has_code(element: Any, token: str) -> bool:
    system, _, code = token.rpartition("|")
    items = element if isinstance(element, list) else [element]
    for item in items:
        if isinstance(item, str) and not system and item == code:
            return True
        if isinstance(item, dict):
            for coding in item.get("coding") or []:
                if coding.get("code") == code and (not system or coding.get("system") == system):
                    return True
    return False
