"""The resource server against forged, stale and misdirected Bearer tokens (issue 7's attack list).

Each attack must end in 401 with `WWW-Authenticate: Bearer error="invalid_token"` and an
OperationOutcome body — and no data.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tests.auth.conftest import BASE, Gateway, KeyPair, assertion


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(gateway: Gateway, client_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": gateway.auth.server.endpoints.issuer, "aud": BASE, "sub": client_id, "client_id": client_id,
              "scope": "system/*.rs", "iat": now, "exp": now + 300, "jti": uuid.uuid4().hex}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(gateway: Gateway, claims: dict[str, Any], kid: str | None = None) -> str:
    """Signed with the gateway's own key: every claim-level attack is otherwise a valid token."""
    keys = gateway.auth.server.keys
    return jwt.encode(claims, keys._signing[1], algorithm="RS384", headers={"kid": kid or keys.kid})


def assert_refused(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "s1" not in r.text


@pytest.fixture
async def client_id(gateway: Gateway) -> str:
    client_id, _ = await gateway.backend()
    return client_id


async def test_a_real_token_reads(gateway: Gateway, client_id: str) -> None:
    r = await gateway.get("/fhir/Specimen/s1", _signed(gateway, _claims(gateway, client_id)))
    assert r.status_code == 200


async def test_no_token(gateway: Gateway) -> None:
    r = await gateway.http.get("/fhir/Specimen/s1")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_garbage_token(gateway: Gateway) -> None:
    r = await gateway.get("/fhir/Specimen/s1", "not.a.jwt")
    assert_refused(r)
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


async def test_alg_none(gateway: Gateway, client_id: str) -> None:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims(gateway, client_id)).encode())
    assert_refused(await gateway.get("/fhir/Specimen/s1", f"{header}.{payload}."))


async def test_hs256_signed_with_the_public_key(gateway: Gateway, client_id: str) -> None:
    public_pem = gateway.auth.server.keys._signing[1].public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": gateway.auth.server.keys.kid}).encode())
    payload = _b64(json.dumps(_claims(gateway, client_id)).encode())
    signature = _b64(hmac.new(public_pem, f"{header}.{payload}".encode(), "sha256").digest())
    assert_refused(await gateway.get("/fhir/Specimen/s1", f"{header}.{payload}.{signature}"))


async def test_wrong_audience(gateway: Gateway, client_id: str) -> None:
    token = _signed(gateway, _claims(gateway, client_id, aud="https://other-server.example/fhir"))
    assert_refused(await gateway.get("/fhir/Specimen/s1", token))


async def test_wrong_issuer(gateway: Gateway, client_id: str) -> None:
    token = _signed(gateway, _claims(gateway, client_id, iss="https://evil.example/auth"))
    assert_refused(await gateway.get("/fhir/Specimen/s1", token))


async def test_expired(gateway: Gateway, client_id: str) -> None:
    now = int(time.time())
    token = _signed(gateway, _claims(gateway, client_id, iat=now - 7200, exp=now - 3600))
    assert_refused(await gateway.get("/fhir/Specimen/s1", token))


async def test_not_yet_valid(gateway: Gateway, client_id: str) -> None:
    token = _signed(gateway, _claims(gateway, client_id, nbf=int(time.time()) + 600))
    assert_refused(await gateway.get("/fhir/Specimen/s1", token))


async def test_unknown_kid(gateway: Gateway, client_id: str) -> None:
    stranger = KeyPair.rsa()
    token = jwt.encode(_claims(gateway, client_id), stranger.private, algorithm="RS384", headers={"kid": "nope"})
    assert_refused(await gateway.get("/fhir/Specimen/s1", token))


async def test_signed_by_a_stranger_under_the_gateways_kid(gateway: Gateway, client_id: str) -> None:
    stranger = KeyPair.rsa()
    token = jwt.encode(_claims(gateway, client_id), stranger.private, algorithm="RS384",
                       headers={"kid": gateway.auth.server.keys.kid})
    assert_refused(await gateway.get("/fhir/Specimen/s1", token))


async def test_tampered_payload(gateway: Gateway, client_id: str) -> None:
    header, _, signature = _signed(gateway, _claims(gateway, client_id, scope="system/Patient.rs")).split(".")
    forged = _b64(json.dumps(_claims(gateway, client_id, scope="system/*.cruds")).encode())
    assert_refused(await gateway.get("/fhir/Specimen/s1", f"{header}.{forged}.{signature}"))


async def test_token_without_exp(gateway: Gateway, client_id: str) -> None:
    assert_refused(await gateway.get("/fhir/Specimen/s1", _signed(gateway, _claims(gateway, client_id, exp=None))))


async def test_revoked_token_is_refused_even_after_it_was_cached(gateway: Gateway) -> None:
    client_id, key = await gateway.backend()
    token = (await gateway.backend_token(client_id, key)).json()["access_token"]
    assert (await gateway.get("/fhir/Specimen/s1", token)).status_code == 200
    assertion_form = {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}
    r = await gateway.http.post("/auth/revoke", data={"token": token, **assertion_form,
                                                      "client_assertion": assertion(client_id, key)})
    assert r.status_code == 200
    assert_refused(await gateway.get("/fhir/Specimen/s1", token))


async def test_token_of_a_disabled_client(gateway: Gateway) -> None:
    client_id, key = await gateway.backend()
    token = (await gateway.backend_token(client_id, key)).json()["access_token"]
    assert (await gateway.get("/fhir/Specimen/s1", token)).status_code == 200
    await gateway.auth.server.registry.disable_client(client_id)
    await gateway.auth.server.revoke(f"client:{client_id}")
    assert_refused(await gateway.get("/fhir/Specimen/s1", token))


async def test_insufficient_scope_is_403_with_the_rfc6750_error(gateway: Gateway) -> None:
    token = await gateway.system_token("system/Specimen.rs")
    r = await gateway.get("/fhir/Consent/c1", token)
    assert r.status_code == 403
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]
    assert r.json()["resourceType"] == "OperationOutcome"


async def test_header_with_odd_types_is_refused_not_a_server_error(gateway: Gateway, client_id: str) -> None:
    payload = _b64(json.dumps(_claims(gateway, client_id)).encode())
    for header in ({"alg": ["RS384"]}, {"alg": "RS384", "kid": {"x": 1}}, ["RS384"]):
        token = f"{_b64(json.dumps(header).encode())}.{payload}.{_b64(b'sig')}"
        assert_refused(await gateway.get("/fhir/Specimen/s1", token))
