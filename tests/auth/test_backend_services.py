"""SMART Backend Services at the token endpoint: client_credentials with a JWT client assertion."""

from __future__ import annotations

import time

import httpx
import respx

from tests.auth.conftest import JWT_BEARER, Gateway, KeyPair, assertion


def _form(client_id: str, signed: str, scope: str = "system/*.rs") -> dict[str, str]:
    return {"grant_type": "client_credentials", "scope": scope, "client_assertion_type": JWT_BEARER,
            "client_assertion": signed}


def assert_invalid_client(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "access_token" not in r.json()


async def test_token_response_carries_what_smart_requires(gateway: Gateway) -> None:
    client_id, key = await gateway.backend("system/*.rs")
    r = await gateway.backend_token(client_id, key, "system/Specimen.rs system/Consent.read openid fhirUser")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] > 0
    assert body["scope"] == "system/Specimen.rs system/Consent.read"
    assert r.headers["cache-control"] == "no-store"
    assert "refresh_token" not in body


async def test_es384_and_rs256_assertions_are_accepted(gateway: Gateway) -> None:
    for key in (KeyPair.ec(), KeyPair.rsa("RS256")):
        client_id, key = await gateway.backend(key=key)
        assert (await gateway.backend_token(client_id, key)).status_code == 200


async def test_replayed_assertion_jti_is_refused(gateway: Gateway) -> None:
    client_id, key = await gateway.backend()
    signed = assertion(client_id, key)
    assert (await gateway.token_request(**_form(client_id, signed))).status_code == 200
    replay = await gateway.token_request(**_form(client_id, signed))
    assert_invalid_client(replay)
    assert "jti" in replay.json()["error_description"]


async def test_assertion_expiring_more_than_five_minutes_ahead_is_refused(gateway: Gateway) -> None:
    client_id, key = await gateway.backend()
    signed = assertion(client_id, key, exp=int(time.time()) + 600)
    assert_invalid_client(await gateway.token_request(**_form(client_id, signed)))


async def test_assertion_signed_by_another_clients_key_is_refused(gateway: Gateway) -> None:
    victim, _ = await gateway.backend()
    _, attacker_key = await gateway.backend()
    assert_invalid_client(await gateway.token_request(**_form(victim, assertion(victim, attacker_key))))


async def test_assertion_with_iss_not_sub_or_wrong_aud_is_refused(gateway: Gateway) -> None:
    client_id, key = await gateway.backend()
    other, _ = await gateway.backend()
    assert_invalid_client(await gateway.token_request(**_form(client_id, assertion(client_id, key, sub=other)))
                          )
    wrong_aud = assertion(client_id, key, aud="http://testserver/fhir")
    assert_invalid_client(await gateway.token_request(**_form(client_id, wrong_aud)))


async def test_expired_assertion_and_assertion_without_jti_are_refused(gateway: Gateway) -> None:
    client_id, key = await gateway.backend()
    old = assertion(client_id, key, exp=int(time.time()) - 120, iat=int(time.time()) - 300)
    assert_invalid_client(await gateway.token_request(**_form(client_id, old)))
    assert_invalid_client(await gateway.token_request(**_form(client_id, assertion(client_id, key, jti=None))))


async def test_scope_escalation_at_the_token_endpoint_grants_only_what_is_registered(gateway: Gateway) -> None:
    client_id, key = await gateway.backend("system/Specimen.rs")
    r = await gateway.backend_token(client_id, key, "system/Specimen.rs system/Consent.rs system/*.cruds")
    assert r.json()["scope"] == "system/Specimen.rs"
    token = r.json()["access_token"]
    assert (await gateway.get("/fhir/Consent/c1", token)).status_code == 403
    nothing = await gateway.backend_token(client_id, key, "system/Consent.rs")
    assert nothing.status_code == 400 and nothing.json()["error"] == "invalid_scope"


async def test_public_and_patient_scopes_are_not_for_backend_services(gateway: Gateway) -> None:
    client_id, key = await gateway.backend("system/*.rs patient/*.rs")
    r = await gateway.backend_token(client_id, key, "patient/*.rs system/Specimen.rs")
    assert r.json()["scope"] == "system/Specimen.rs"


async def test_keys_from_a_jwks_uri_are_fetched_and_refreshed_on_an_unknown_kid(gateway: Gateway) -> None:
    first, second = KeyPair.rsa(), KeyPair.rsa()
    url = "https://ehr.example.org/.well-known/jwks.json"
    client, _ = await gateway.auth.server.registry.add_client(name="EHR", kind="backend", audience="internal",
                                                              scopes="system/*.rs", jwks_uri=url)
    with respx.mock(assert_all_called=False) as mock:
        route = mock.get(url).mock(return_value=httpx.Response(200, json=first.jwks()))
        assert (await gateway.backend_token(client.client_id, first)).status_code == 200
        assert (await gateway.backend_token(client.client_id, first)).status_code == 200
        assert route.call_count == 1
        route.mock(return_value=httpx.Response(200, json={"keys": first.jwks()["keys"] + second.jwks()["keys"]}))
        gateway.auth.server.clients._remote[client.client_id]._fetched_at = 0  # past the refetch interval
        assert (await gateway.backend_token(client.client_id, second)).status_code == 200
        assert route.call_count == 2


async def test_client_credentials_needs_an_assertion_and_a_backend_client(gateway: Gateway) -> None:
    app_id, secret = await gateway.app_client(kind="confidential", scopes="launch/patient patient/*.rs")
    r = await gateway.http.post("/auth/token", data={"grant_type": "client_credentials", "scope": "system/*.rs"},
                                auth=(app_id, secret or ""))
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"
    r = await gateway.token_request(grant_type="client_credentials", scope="system/*.rs", client_id=app_id)
    assert r.status_code == 401


async def test_token_endpoint_is_rate_limited_per_client(gateway: Gateway) -> None:
    gateway.auth.server.settings.rate_limit = 1.0  # GATEWAY_RATE_LIMIT=1: one per second, burst of two
    client_id, key = await gateway.backend()
    statuses = [(await gateway.backend_token(client_id, key)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = await gateway.backend_token(client_id, key)
    assert limited.status_code == 429 and "retry-after" in limited.headers
    other, other_key = await gateway.backend()
    assert (await gateway.backend_token(other, other_key)).status_code == 200
