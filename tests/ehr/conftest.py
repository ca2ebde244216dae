"""Fixtures of the EHR proxy tests: the gateway's EHR key, a synthetic EHR (served in-process
behind respx, or as a real process), and biobank donors covering the consent cases."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from starlette.requests import Request

from gateway.access.principal import Principal
from gateway.access.scopes import Scopes
from gateway.access.tokens import thumbprint
from gateway.app import create_app
from gateway.store import Store
from tests.conftest import make_settings
from tests.ehr.upstream.data import Dataset, build, mrn
from tests.ehr.upstream.server import Upstream, create_upstream

EHR = "http://ehr.test/fhir"
CLIENT_ID = "biobank-gateway"
B = "https://biobank.massgeneral.org/fhir"
MRN_SYSTEM = "http://hospital.massgeneral.org/fhir/sid/mrn"
PERMISSIONS = ("research", "genetic", "ehr-linkage", "recontact", "external-sharing", "commercial")
EVERYTHING = frozenset(PERMISSIONS) - {"commercial"}

INTERNAL = Principal("lab-system", "internal", Scopes.parse("system/*.rs"))
EXTERNAL = Principal("collab-app", "external", Scopes.parse("system/*.rs"))
EXTERNAL_LABS = Principal("collab-labs", "external", Scopes.parse(
    "system/Patient.rs system/Observation.rs?category=laboratory system/Condition.rs"))

DONORS: dict[str, tuple[str | None, frozenset[str], tuple[str, str] | None]] = {
    # biobank Patient: (MRN, consent permissions, withdrawal (scope, date))
    "S1": (mrn(1), EVERYTHING, None),
    "S2": (mrn(2), EVERYTHING - {"ehr-linkage"}, None),
    "S3": (mrn(3), EVERYTHING, ("NO_FURTHER_USE", "2025-01-01T00:00:00Z")),
    "S4": (None, EVERYTHING, None),
    "S5": ("MGH-0000001", EVERYTHING, None),
    "S6": (mrn(6), EVERYTHING - {"external-sharing"}, None),
}
"""S1 consents to everything; S2 not to EHR linkage; S3 withdrew; S4 has no MRN; S5's MRN is
unknown to the EHR; S6 does not allow sharing outside the hospital."""


def patient(id_: str, mrn_: str | None) -> dict[str, Any]:
    identifiers = [{"system": f"{B}/sid/subject", "value": id_}]
    if mrn_:
        identifiers.append({"system": MRN_SYSTEM, "value": mrn_})
    return {"resourceType": "Patient", "id": id_, "identifier": identifiers}


def consent(id_: str, subject: str, permits: frozenset[str], withdrawal: tuple[str, str] | None) -> dict[str, Any]:
    status = "WITHDRAWN" if withdrawal else "ACTIVE"
    extension: list[dict[str, Any]] = [{"url": f"{B}/StructureDefinition/source-status",
                                        "valueCoding": {"system": f"{B}/CodeSystem/consent-status", "code": status}}]
    if withdrawal:
        extension.append({"url": f"{B}/StructureDefinition/consent-withdrawal", "extension": [
            {"url": "scope", "valueCoding": {"system": f"{B}/CodeSystem/withdrawal-scope", "code": withdrawal[0]}},
            {"url": "date", "valueDateTime": withdrawal[1]}]})
    return {
        "resourceType": "Consent", "id": id_, "extension": extension,
        "status": "inactive" if withdrawal else "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "57016-8"}]}],
        "patient": {"reference": f"Patient/{subject}"}, "dateTime": "2024-01-01",
        "provision": {"type": "permit", "provision": [
            {"type": "permit" if kind in permits else "deny",
             "purpose": [{"system": f"{B}/CodeSystem/consent-permission", "code": kind}]} for kind in PERMISSIONS]},
    }


def specimen(id_: str, subject: str) -> dict[str, Any]:
    return {"resourceType": "Specimen", "id": id_, "status": "available",
            "subject": {"reference": f"Patient/{subject}"}}


async def seed_biobank(store: Store) -> None:
    resources: list[dict[str, Any]] = []
    for id_, (mrn_, permits, withdrawal) in DONORS.items():
        resources += [patient(id_, mrn_), consent(f"C{id_}", id_, permits, withdrawal), specimen(f"SP{id_}", id_)]
    await store.put_many(resources)


@dataclass
class GatewayKey:
    pem: Path
    jwks: dict[str, Any]


@pytest.fixture(scope="session")
def gateway_key(tmp_path_factory: pytest.TempPathFactory) -> GatewayKey:
    """The gateway's EHR client key (GATEWAY_EHR_PRIVATE_KEY) and the JWKS the EHR registered for it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("ehr-key") / "gateway-ehr.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    public.update({"kid": thumbprint(public), "alg": "RS384", "use": "sig"})
    return GatewayKey(path, {"keys": [public]})


@pytest.fixture(scope="session")
def dataset() -> Dataset:
    return build(8)


@dataclass
class FakeEhr:
    """The synthetic EHR in-process behind respx; `fail(path, *outcomes)` queues answers
    (httpx.Response or an exception to raise) that take the place of the real ones."""

    upstream: Upstream
    router: respx.MockRouter
    faults: dict[str, list[httpx.Response | Exception]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def fail(self, path: str, *outcomes: httpx.Response | Exception) -> None:
        self.faults.setdefault(path, []).extend(outcomes)

    def calls(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]


@pytest.fixture
def fake_ehr(dataset: Dataset, gateway_key: GatewayKey) -> Iterator[FakeEhr]:
    upstream = Upstream(dataset, CLIENT_ID, gateway_key.jwks, page_size=5)
    transport = httpx.ASGITransport(app=create_upstream(upstream))
    with respx.mock(assert_all_called=False) as router:
        fake = FakeEhr(upstream, router)

        async def answer(request: httpx.Request) -> httpx.Response:
            fake.requests.append(request)
            queued = fake.faults.get(request.url.path)
            if queued:
                outcome = queued.pop(0)
                if isinstance(outcome, Exception):
                    raise outcome
                return outcome
            response = await transport.handle_async_request(request)
            return httpx.Response(response.status_code, headers=response.headers, content=await response.aread())

        router.route(host="ehr.test").mock(side_effect=answer)
        yield fake


@dataclass
class Gateway:
    client: httpx.AsyncClient
    app: FastAPI
    principal: Principal = INTERNAL

    def as_(self, principal: Principal) -> Gateway:
        self.principal = principal
        return self


@pytest.fixture
async def gateway(tmp_path: Path, fake_ehr: FakeEhr, gateway_key: GatewayKey) -> AsyncIterator[Gateway]:
    """An in-process gateway (SQLite, in-process cache) proxying the fake EHR; `as_()` picks the principal."""
    settings = make_settings(f"sqlite:///{tmp_path}/gateway.db", tmp_path, ehr_base_url=EHR, ehr_timeout=2.0,
                             ehr_client_id=CLIENT_ID, ehr_private_key=gateway_key.pem)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await seed_biobank(app.state.services.store)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
            gw = Gateway(client, app)

            async def authenticate(_: Request) -> Principal:
                return gw.principal

            app.state.services.authenticate = authenticate
            yield gw


def ehr_ids_of(dataset: Dataset, mrn_: str) -> set[str]:
    """Every EHR id in the record of the patient with this MRN (for privacy scans)."""
    pid = dataset.patient_by_mrn[mrn_]
    ids = {pid}
    for by_id in dataset.resources.values():
        for id_, resource in by_id.items():
            if json.dumps(resource).find(f"Patient/{pid}") >= 0:
                ids.add(id_)
    return ids
