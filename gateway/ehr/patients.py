"""Which EHR Patient is this biobank Patient? Found once by MRN, then cached.

The biobank Patient carries the hospital MRN (profiles/README.md, BiobankPatient slice
`mrn`); the EHR is asked `Patient?identifier=<mrn-system>|<mrn>`. The link is cached
under a keyed digest of the MRN, so neither Redis nor its dumps hold an MRN, and a
reloaded Patient with a corrected MRN is looked up afresh. The reverse link (EHR id ->
biobank Patient) lets answers that name the EHR patient be checked against the consent of
the right donor.
"""

from __future__ import annotations

import structlog

from gateway.cache import Cache
from gateway.ehr import failures
from gateway.ehr.client import EhrClient
from gateway.ehr.keys import Keys
from gateway.store import Store

MRN_SYSTEM = "http://hospital.massgeneral.org/fhir/sid/mrn"
NO_MATCH = b"-"

log = structlog.get_logger("gateway.ehr")


class PatientLinker:
    def __init__(self, store: Store, client: EhrClient, cache: Cache, keys: Keys, ttl: float = 3600.0) -> None:
        self.store = store
        self.client = client
        self.cache = cache
        self.keys = keys
        self.ttl = ttl

    async def mrn(self, patient: str) -> str | None:
        stored = await self.store.read("Patient", patient)
        if stored is None or stored.deleted:
            return None
        for identifier in stored.json().get("identifier") or []:
            if identifier.get("system") == MRN_SYSTEM and identifier.get("value"):
                return str(identifier["value"])
        return None

    async def ehr_patient(self, patient: str) -> str | None:
        """The EHR's id of the biobank Patient `patient`; None when it has no MRN or the EHR no (single) match."""
        mrn = await self.mrn(patient)
        if mrn is None:
            return None
        key = "ehr:link:" + self.keys.digest("mrn", mrn)
        cached = await self.cache.get(key)
        if cached is not None:
            return None if cached == NO_MATCH else cached.decode()
        answer = await self.client.get("Patient", [("identifier", f"{MRN_SYSTEM}|{mrn}")])
        body = answer.body or {}
        if body.get("resourceType") != "Bundle":
            raise failures.garbage("the Patient search did not answer a Bundle")
        ids = [e["resource"]["id"] for e in body.get("entry") or []
               if isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == "Patient"
               and isinstance(e["resource"].get("id"), str)]
        if len(ids) != 1:
            if ids:
                log.warning("MRN matches several EHR patients; not linked", patient=patient, matches=len(ids))
            await self.cache.set(key, NO_MATCH, ttl=min(self.ttl, 300.0))
            return None
        await self.cache.set(key, ids[0].encode(), ttl=self.ttl)
        await self.cache.set(f"ehr:rev:{ids[0]}", patient.encode(), ttl=self.ttl)
        return ids[0]

    async def biobank_patient(self, ehr_patient: str) -> str | None:
        """The biobank Patient linked to an EHR patient, if a translation made the link recently."""
        raw = await self.cache.get(f"ehr:rev:{ehr_patient}")
        return raw.decode() if raw else None
