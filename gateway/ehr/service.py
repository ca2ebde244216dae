"""The EHR proxy as the API layer uses it: search, page, read and the donor summary.

Each answer comes back rewritten for the asker's disclosure class (see rewrite.py) with,
for every resource, the biobank Patient it is about — what the egress gate needs to check
consent. The gate itself is the API layer's call: nothing here decides who may see what.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from gateway.cache import Cache
from gateway.ehr import failures
from gateway.ehr.answers import AnswerCache
from gateway.ehr.auth import BackendAuth
from gateway.ehr.breaker import CircuitBreaker
from gateway.ehr.client import EhrClient, Upstream
from gateway.ehr.config import EhrConfig
from gateway.ehr.discovery import Discovery
from gateway.ehr.keys import Keys
from gateway.ehr.pages import PageState, PageTokens
from gateway.ehr.patients import PatientLinker
from gateway.ehr.query import ProxyQuery, check_declared
from gateway.ehr.rewrite import Rewriter
from gateway.store import Store

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
SUMMARY_PAGES = 10
"""Pages followed per type for `$ehr-summary` (a donor's record, not a population)."""


@dataclass(frozen=True, slots=True)
class Asker:
    client: str
    audience: Literal["internal", "external"]

    @property
    def external(self) -> bool:
        return self.audience == "external"


@dataclass(frozen=True, slots=True)
class Proxied:
    resource: dict[str, Any]
    patient: str | None
    """The biobank Patient the resource is about (None: not linked to a donor)."""


@dataclass(frozen=True, slots=True)
class ProxiedPage:
    items: list[Proxied]
    next: str | None
    """A gateway page token for the next page."""
    cache: str
    """hit | revalidated | miss | none (nothing asked: the Patient has no EHR record)."""


def _resource(body: Any, type_: str) -> dict[str, Any]:
    if not isinstance(body, dict) or body.get("resourceType") != type_:
        raise failures.garbage(f"expected a {type_}")
    if not isinstance(body.get("id"), str) or not _ID.match(body["id"]):
        raise failures.garbage(f"a {type_} without a valid id")
    return body


class EhrService:
    def __init__(self, config: EhrConfig, client: EhrClient, cache: Cache, store: Store, keys: Keys) -> None:
        self.config = config
        self.client = client
        self.cache = cache
        self.discovery = Discovery(client)
        self.linker = PatientLinker(store, client, cache, keys, config.link_ttl)
        self.answers = AnswerCache(cache, client, config.cache_ttl, config.stale_ttl)
        self.rewriter = Rewriter(config.base_url, config.gateway_base, keys)
        self.pages = PageTokens(keys.fernet("pages"), config.page_ttl)
        if config.client_id and config.private_key:
            client.auth = BackendAuth(config.client_id, config.private_key.read_bytes(), config.scope,
                                      self.discovery.token_endpoint, client.post_form)

    @classmethod
    def open(cls, config: EhrConfig, store: Store, cache: Cache) -> EhrService:
        """`cache`: the app's shared cache; the proxy degrades to per-instance state while Redis is down."""
        breaker = CircuitBreaker(cache.resilient(), config.breaker_failures, config.breaker_reset,
                                 probe_timeout=config.timeout + 1)
        client = EhrClient(config, breaker)
        return cls(config, client, cache.resilient(), store, Keys.load(config.private_key, config.data_dir))

    async def aclose(self) -> None:
        await self.client.aclose()

    async def status(self) -> str:
        """up | degraded (breaker open or probing): the EHR's line in /readyz."""
        return "up" if await self.client.breaker.state() == "closed" else "degraded"

    async def search(self, query: ProxyQuery, asker: Asker, bypass: bool = False) -> ProxiedPage:
        check_declared(query, await self.discovery.search_params(query.type))
        ehr_patient = None
        if query.patient is not None:
            ehr_patient = await self.linker.ehr_patient(query.patient)
            if ehr_patient is None:
                return ProxiedPage([], None, "none")
        state = PageState(query.type, query.type, asker.client, asker.audience, query.patient, ehr_patient)
        return await self._page(state, query.upstream(ehr_patient), bypass)

    async def page(self, type_: str, token: str, asker: Asker, bypass: bool = False) -> ProxiedPage:
        return await self._page(self.pages.open(token, type_, asker.client, asker.audience), [], bypass)

    async def read(self, type_: str, id_: str, asker: Asker, bypass: bool = False) -> Proxied | None:
        """The resource, or None when an external principal names an id the gateway never gave out."""
        patient = ehr_patient = None
        ehr_id = id_
        if asker.external:
            raw = await self.cache.get(f"ehr:gid:{type_}:{id_}")
            if raw is None:
                return None
            ehr_id, patient = orjson.loads(raw)
            ehr_patient = await self.linker.ehr_patient(patient) if patient else None
            if ehr_patient is None:
                return None

        async def build(answer: Upstream) -> dict[str, Any]:
            resource = _resource(answer.body, type_)
            if resource["id"] != ehr_id:
                raise failures.garbage(f"asked for one {type_}, got another")
            item = await self._item(resource, asker, patient, ehr_patient)
            return {"items": [item] if item else [], "next": None}

        payload, _ = await self.answers.fetch(asker.audience, f"{type_}/{ehr_id}", [], build, bypass)
        return Proxied(payload["items"][0]["r"], payload["items"][0]["p"]) if payload["items"] else None

    async def summary(self, patient: str, types: list[str], asker: Asker) -> list[Proxied]:
        """The donor's EHR resources of `types`, the types fetched in parallel."""
        ehr_patient = await self.linker.ehr_patient(patient)
        if ehr_patient is None:
            return []

        async def everything(type_: str) -> list[Proxied]:
            state = PageState(type_, type_, asker.client, asker.audience, patient, ehr_patient)
            page = await self._page(state, [("patient", ehr_patient)])
            items = list(page.items)
            for _ in range(SUMMARY_PAGES - 1):
                if page.next is None:
                    break
                page = await self.page(type_, page.next, asker)
                items += page.items
            return items

        return [item for items in await asyncio.gather(*map(everything, types)) for item in items]

    async def _page(self, state: PageState, params: list[tuple[str, str]], bypass: bool = False) -> ProxiedPage:
        asker = Asker(state.client, "external" if state.audience == "external" else "internal")

        async def build(answer: Upstream) -> dict[str, Any]:
            body = answer.body
            if not isinstance(body, dict) or body.get("resourceType") != "Bundle" or not isinstance(
                    body.get("entry", []), list):
                raise failures.garbage("a search did not answer a Bundle")
            items = []
            for entry in body.get("entry", []):
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if not isinstance(resource, dict) or resource.get("resourceType") != state.type:
                    continue  # OperationOutcome warnings, included resources: never passed on
                item = await self._item(_resource(resource, state.type), asker, state.patient, state.ehr_patient)
                if item is not None:
                    items.append(item)
            return {"items": items, "next": self._next(body)}

        payload, how = await self.answers.fetch(state.audience, state.ref, params, build, bypass)
        token = None
        if payload["next"]:
            token = self.pages.mint(PageState(state.type, payload["next"], state.client, state.audience,
                                              state.patient, state.ehr_patient))
        return ProxiedPage([Proxied(i["r"], i["p"]) for i in payload["items"]], token, how)

    def _next(self, bundle: dict[str, Any]) -> str | None:
        for link in bundle.get("link") or []:
            if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
                return self.client.url(link["url"]).removeprefix(self.config.base_url + "/")
        return None

    def _subject(self, resource: dict[str, Any]) -> str | None:
        """The EHR Patient id a resource is about (its `subject` or `patient` reference)."""
        for key in ("subject", "patient"):
            ref = (resource.get(key) or {}).get("reference") if isinstance(resource.get(key), dict) else None
            if isinstance(ref, str):
                ref = ref.removeprefix(self.config.base_url + "/")
                if ref.startswith("Patient/"):
                    return ref.removeprefix("Patient/")
        return None

    async def _item(self, resource: dict[str, Any], asker: Asker, patient: str | None,
                    ehr_patient: str | None) -> dict[str, Any] | None:
        """The resource rewritten for `asker`'s class, with its biobank Patient; None for an
        external asker when it is not about the Patient the query named."""
        subject = self._subject(resource)
        if not asker.external:
            if patient is None and subject is not None:
                patient = await self.linker.biobank_patient(subject)
            return {"r": self.rewriter.internal(resource), "p": patient}
        if patient is None or subject is None or subject != ehr_patient:
            return None
        rewritten = self.rewriter.external(resource, ehr_patient, patient)
        await asyncio.gather(*(self.cache.set(f"ehr:gid:{t}:{gid}", orjson.dumps([ehr_id, patient]),
                                              ttl=self.config.pseudonym_ttl) for t, gid, ehr_id in set(rewritten.ids)))
        return {"r": rewritten.resource, "p": patient}
