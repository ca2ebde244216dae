"""What every interaction needs: the services of the app and who is asking."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import Request

from gateway.access.gate import Gate, Restriction
from gateway.access.principal import Principal
from gateway.access.translation import Translator
from gateway.api.headers import header
from gateway.fhir.errors import FhirError
from gateway.fhir.negotiation import negotiate
from gateway.fhir.prefer import Prefer
from gateway.served import CONFORMANCE_TYPES, PROXIED_TYPES, STORED_TYPES
from gateway.settings import Settings
from gateway.store import Store

Authenticate = Callable[[Request], Awaitable[Principal]]


class Searcher(Protocol):
    """The search engine as the other interactions need it."""

    async def ids(self, type_: str, params: list[tuple[str, str]], restriction: Restriction,
                  limit: int) -> list[str]:
        """Ids matching a FHIR query (conditional interactions)."""
        ...

    def declared(self, type_: str) -> list[dict[str, str]]:
        """CapabilityStatement searchParam entries: every parameter that works, nothing else."""
        ...

    def includes(self, type_: str) -> tuple[list[str], list[str]]:
        """(searchInclude, searchRevInclude) values for the CapabilityStatement."""
        ...

    def declared_system(self) -> list[dict[str, str]]:
        """CapabilityStatement `rest.searchParam`: what a search across all types understands."""
        ...


@dataclass(frozen=True)
class Operation:
    """A FHIR operation the app mounted; `types` empty means system level."""

    name: str
    definition: str
    types: tuple[str, ...] = ()

    def entry(self) -> dict[str, str]:
        return {"name": self.name, "definition": self.definition}


@dataclass
class Services:
    settings: Settings
    store: Store
    gate: Gate
    authenticate: Authenticate
    validate: Callable[[dict[str, Any], str | None], Any]
    search: Searcher
    base_url: str
    profiles_for: Callable[[str], list[str]]
    operations: list[Operation] = field(default_factory=list)
    security: dict[str, Any] | None = None


@dataclass(slots=True)
class Ctx:
    """An interaction's services, principal and preferences. It does not hold the request: the request's scope
    holds it (`state.fhir`, read by the audit), and a reference back made every request's objects a cycle that
    only the garbage collector frees (~90 objects a search; its young collections then took 5-30 ms)."""

    services: Services
    principal: Principal
    prefer: Prefer
    names: Translator
    """The principal's subject ids: what it writes in, what it is written (per-collaborator pseudonyms)."""
    released: list[str] = field(default_factory=list)
    """`Type/id` of every resource the response writers let out (for the AuditEvent)."""

    @property
    def store(self) -> Store:
        return self.services.store

    @property
    def gate(self) -> Gate:
        return self.services.gate

    @property
    def base(self) -> str:
        return self.services.base_url


def services_of(request: Request) -> Services:
    return request.app.state.services


async def context(request: Request) -> Ctx:
    """Authenticate, negotiate the format and read `Prefer`: the start of every FHIR interaction."""
    services: Services = request.app.state.services
    principal = await services.authenticate(request)
    # A read has no query string: parsing an empty one was 4% of a read.
    negotiate(request.query_params.get("_format") if request.scope["query_string"] else None,
              header(request, b"accept"))
    ctx = Ctx(services, principal, Prefer.parse(header(request, b"prefer")), services.gate.translator(principal))
    request.state.fhir = ctx
    return ctx


def stored_type(type_: str) -> str:
    """404 for a type this server does not store (FHIR: unknown or unsupported resource type)."""
    if type_ in PROXIED_TYPES:
        raise FhirError.of(404, "not-supported", f"{type_} is owned by the hospital EHR: this gateway proxies it only "
                           "when GATEWAY_EHR_BASE_URL is set")
    if type_ not in STORED_TYPES:
        raise FhirError.of(404, "not-supported", f"Resource type {type_!r} is not served here")
    return type_


def writable_type(type_: str) -> str:
    """405 for the read-only conformance types (they come from profiles/ and mappings/)."""
    if stored_type(type_) in CONFORMANCE_TYPES:
        raise FhirError.of(405, "not-supported", f"{type_} resources are read-only here: they are published "
                           "from the gateway's profiles/ folder")
    return type_
