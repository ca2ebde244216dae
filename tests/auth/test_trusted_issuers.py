"""Tokens of an external authorization server listed in GATEWAY_TRUSTED_ISSUERS."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest
import respx

from gateway.app import create_app
from tests.auth.conftest import BASE, BIOBANK, KeyPair
from tests.conftest import make_settings

ISS = "https://idp.partner.example"
JWKS_URI = f"{ISS}/jwks"


@pytest.fixture
async def partner(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, KeyPair]]:
    key = KeyPair.rsa("RS256")
    trusted = json.dumps([{"iss": ISS, "jwks_uri": JWKS_URI}])
    app = create_app(make_settings(f"sqlite:///{tmp_path}/g.db", tmp_path, auth_disabled=False,
                                   trusted_issuers=trusted))
    with respx.mock(assert_all_called=False) as mock:
        mock.get(JWKS_URI).mock(return_value=httpx.Response(200, json=key.jwks()))
        async with app.router.lifespan_context(app):
            await app.state.services.store.put_many(BIOBANK)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
                yield http, key


def _token(key: KeyPair, **claims: object) -> str:
    now = int(time.time())
    body = {"iss": ISS, "aud": BASE, "sub": "partner-app", "scope": "system/Specimen.rs", "iat": now,
            "exp": now + 300, "jti": uuid.uuid4().hex, **claims}
    return jwt.encode(body, key.private, algorithm=key.alg, headers={"kid": key.kid})


async def test_a_trusted_issuers_token_is_accepted_as_external(partner: tuple[httpx.AsyncClient, KeyPair]) -> None:
    http, key = partner
    headers = {"Authorization": f"Bearer {_token(key)}"}
    assert (await http.get("/fhir/Consent/c1", headers=headers)).status_code == 403
    r = await http.put("/fhir/Specimen/s1", headers=headers | {"Content-Type": "application/fhir+json"},
                       json={"resourceType": "Specimen", "id": "s1", "status": "unavailable"})
    assert r.status_code == 403, "external principals never write"


async def test_a_trusted_issuers_token_for_another_audience_is_refused(
        partner: tuple[httpx.AsyncClient, KeyPair]) -> None:
    http, key = partner
    r = await http.get("/fhir/Specimen/s1", headers={"Authorization": f"Bearer {_token(key, aud='https://x/fhir')}"})
    assert r.status_code == 401


async def test_a_token_signed_by_someone_else_claiming_the_trusted_issuer_is_refused(
        partner: tuple[httpx.AsyncClient, KeyPair]) -> None:
    http, key = partner
    forger = KeyPair.rsa()
    forger.kid = key.kid
    r = await http.get("/fhir/Specimen/s1", headers={"Authorization": f"Bearer {_token(forger)}"})
    assert r.status_code == 401
