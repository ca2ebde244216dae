"""SMART app launch: authorization code + PKCE through the HTML pages (driven without a browser),
refresh tokens, EHR launch, confidential clients, introspection and revocation."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import httpx
import jwt

from tests.access.test_pseudonyms import SECRET
from tests.auth.conftest import BASE, PASSWORD, REDIRECT, Gateway, hidden, pkce, query_of, running_gateway

PATIENT_SCOPES = "launch/patient offline_access patient/*.rs"


def assert_invalid_grant(r: httpx.Response) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_grant"
    assert "access_token" not in r.json()


async def test_standalone_patient_launch_end_to_end(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client()
    verifier, challenge = pkce()
    consent = await gateway.sign_in(gateway.authorize_params(client_id, challenge, PATIENT_SCOPES + " openid fhirUser"))
    assert '<select name="patient"' in consent
    assert '<option value="p1">BB-0001</option>' in consent
    assert 'name="scope" value="patient/*.rs"' in consent and 'value="openid"' not in consent
    assert 'name="decision" value="approve"' in consent and 'name="decision" value="deny"' in consent
    done = await gateway.http.post("/auth/authorize", data={
        "auth_request": hidden(consent, "auth_request"), "patient": "p1", "decision": "approve",
        "scope": ["launch/patient", "offline_access", "patient/*.rs"]})
    assert done.status_code == 302 and done.headers["location"].startswith(REDIRECT)
    code = query_of(done.headers["location"])["code"]
    r = await gateway.token_request(grant_type="authorization_code", code=code, redirect_uri=REDIRECT,
                                    code_verifier=verifier, client_id=client_id)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["patient"] == "p1" and body["scope"] == PATIENT_SCOPES and body["refresh_token"]
    assert r.headers["cache-control"] == "no-store"
    assert (await gateway.get("/fhir/Specimen/s1", body["access_token"])).status_code == 200


async def test_wrong_password_shows_the_sign_in_page_again(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client()
    page = await gateway.http.get("/auth/authorize", params=gateway.authorize_params(client_id, pkce()[1],
                                                                                        PATIENT_SCOPES))
    r = await gateway.http.post("/auth/authorize", data={"auth_request": hidden(page.text, "auth_request"),
                                                         "username": "alice", "password": "wrong"})
    assert r.status_code == 401 and 'name="password"' in r.text and "code=" not in r.text


async def test_deny_redirects_with_access_denied(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client()
    consent = await gateway.sign_in(gateway.authorize_params(client_id, pkce()[1], PATIENT_SCOPES))
    r = await gateway.http.post("/auth/authorize", data={"auth_request": hidden(consent, "auth_request"),
                                                         "decision": "deny"})
    assert query_of(r.headers["location"]) == {"error": "access_denied", "error_description": "the user denied access",
                                               "state": "st-123"}


async def test_tampered_pending_request_is_refused(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client()
    consent = await gateway.sign_in(gateway.authorize_params(client_id, pkce()[1], PATIENT_SCOPES))
    sealed = hidden(consent, "auth_request")
    header, payload, signature = sealed.split(".")
    forged = base64.urlsafe_b64encode(base64.urlsafe_b64decode(payload + "==").replace(b"st-123", b"st-999"))
    r = await gateway.http.post("/auth/authorize", data={
        "auth_request": f"{header}.{forged.rstrip(b'=').decode()}.{signature}", "decision": "approve",
        "patient": "p1", "scope": "patient/*.rs"})
    assert r.status_code == 400 and "location" not in r.headers


async def test_pkce_missing_is_refused(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client()
    params = gateway.authorize_params(client_id, "", PATIENT_SCOPES)
    del params["code_challenge"], params["code_challenge_method"]
    r = await gateway.http.get("/auth/authorize", params=params)
    assert r.status_code == 302
    assert query_of(r.headers["location"])["error"] == "invalid_request"


async def test_pkce_plain_is_refused(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client()
    verifier = "a" * 43
    params = gateway.authorize_params(client_id, verifier, PATIENT_SCOPES, code_challenge_method="plain")
    r = await gateway.http.get("/auth/authorize", params=params)
    assert query_of(r.headers["location"])["error"] == "invalid_request"


async def test_pkce_wrong_verifier_is_refused(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client()
    _, challenge = pkce()
    code = await gateway.code(client_id, challenge, PATIENT_SCOPES)
    r = await gateway.token_request(grant_type="authorization_code", code=code, redirect_uri=REDIRECT,
                                    code_verifier=pkce()[0], client_id=client_id)
    assert_invalid_grant(r)


async def test_code_without_verifier_is_refused(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client()
    code = await gateway.code(client_id, pkce()[1], PATIENT_SCOPES)
    assert_invalid_grant(await gateway.token_request(grant_type="authorization_code", code=code,
                                                     redirect_uri=REDIRECT, client_id=client_id))


async def test_code_reused_is_refused_and_the_first_tokens_are_revoked(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client()
    verifier, challenge = pkce()
    code = await gateway.code(client_id, challenge, PATIENT_SCOPES)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier,
            "client_id": client_id}
    first = (await gateway.token_request(**form)).json()
    assert (await gateway.get("/fhir/Specimen/s1", first["access_token"])).status_code == 200
    assert_invalid_grant(await gateway.token_request(**form))
    assert (await gateway.get("/fhir/Specimen/s1", first["access_token"])).status_code == 401
    assert_invalid_grant(await gateway.token_request(grant_type="refresh_token", client_id=client_id,
                                                     refresh_token=first["refresh_token"]))


async def test_redirect_uri_mismatch_at_authorize_shows_an_error_page_not_a_redirect(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client()
    params = gateway.authorize_params(client_id, pkce()[1], PATIENT_SCOPES, redirect_uri="https://evil.example/cb")
    r = await gateway.http.get("/auth/authorize", params=params)
    assert r.status_code == 400 and "location" not in r.headers


async def test_redirect_uri_mismatch_at_the_token_endpoint(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client()
    verifier, challenge = pkce()
    code = await gateway.code(client_id, challenge, PATIENT_SCOPES)
    r = await gateway.token_request(grant_type="authorization_code", code=code, code_verifier=verifier,
                                    redirect_uri="https://app.example.org/other", client_id=client_id)
    assert_invalid_grant(r)


async def test_aud_other_than_the_fhir_base_is_refused(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client()
    params = gateway.authorize_params(client_id, pkce()[1], PATIENT_SCOPES, aud="https://other.example/fhir")
    r = await gateway.http.get("/auth/authorize", params=params)
    assert query_of(r.headers["location"])["error"] == "invalid_request"


async def test_another_clients_code_is_refused(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client()
    thief, _ = await gateway.app_client()
    verifier, challenge = pkce()
    code = await gateway.code(client_id, challenge, PATIENT_SCOPES)
    assert_invalid_grant(await gateway.token_request(grant_type="authorization_code", code=code, client_id=thief,
                                                     redirect_uri=REDIRECT, code_verifier=verifier))


async def test_refresh_rotates_and_reuse_after_rotation_revokes_the_grant(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client()
    first = await gateway.launch_tokens(client_id)
    second = await gateway.token_request(grant_type="refresh_token", refresh_token=first["refresh_token"],
                                         client_id=client_id)
    assert second.status_code == 200
    second_body = second.json()
    assert second_body["refresh_token"] != first["refresh_token"] and second_body["patient"] == "p1"
    assert (await gateway.get("/fhir/Specimen/s1", second_body["access_token"])).status_code == 200
    assert_invalid_grant(await gateway.token_request(grant_type="refresh_token", client_id=client_id,
                                                     refresh_token=first["refresh_token"]))
    assert (await gateway.get("/fhir/Specimen/s1", second_body["access_token"])).status_code == 401
    assert_invalid_grant(await gateway.token_request(grant_type="refresh_token", client_id=client_id,
                                                     refresh_token=second_body["refresh_token"]))


async def test_scope_escalation_at_authorize_drops_unregistered_scopes(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client(scopes="launch/patient patient/Specimen.rs")
    tokens = await gateway.launch_tokens(client_id, scope="launch/patient patient/Specimen.rs patient/*.cruds "
                                         "user/*.cruds system/*.cruds")
    assert tokens["scope"] == "launch/patient patient/Specimen.rs"


async def test_scope_escalation_at_refresh_is_refused_narrowing_is_allowed(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client(scopes="launch/patient offline_access patient/*.cruds")
    first = await gateway.launch_tokens(client_id)
    wider = await gateway.token_request(grant_type="refresh_token", refresh_token=first["refresh_token"],
                                        client_id=client_id, scope="launch/patient offline_access patient/*.cruds")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    second = await gateway.launch_tokens(client_id)
    narrower = await gateway.token_request(grant_type="refresh_token", refresh_token=second["refresh_token"],
                                           client_id=client_id, scope="patient/Specimen.rs")
    assert narrower.status_code == 200 and narrower.json()["scope"] == "patient/Specimen.rs"
    token = narrower.json()["access_token"]
    assert (await gateway.get("/fhir/Patient/p1", token)).status_code == 403


async def test_ehr_launch_carries_the_launch_patient(gateway: Gateway) -> None:
    ehr_token = await gateway.system_token("system/*.rs")
    r = await gateway.http.post("/auth/launch", data={"patient": "p2"},
                                headers={"Authorization": f"Bearer {ehr_token}"})
    assert r.status_code == 200
    launch = r.json()["launch"]
    client_id, _ = await gateway.app_client(scopes="launch patient/*.rs")
    tokens = await gateway.launch_tokens(client_id, scope="launch patient/*.rs", patient=None, launch=launch)
    assert tokens["patient"] == "p2"
    assert (await gateway.get("/fhir/Specimen/s2", tokens["access_token"])).status_code == 200
    assert (await gateway.get("/fhir/Specimen/s1", tokens["access_token"])).status_code == 404


async def test_unknown_launch_is_refused(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client(scopes="launch patient/*.rs")
    params = gateway.authorize_params(client_id, pkce()[1], "launch patient/*.rs", launch="made-up")
    r = await gateway.http.get("/auth/authorize", params=params)
    assert query_of(r.headers["location"])["error"] == "invalid_request"


async def test_confidential_client_authenticates_with_basic_secret(gateway: Gateway) -> None:
    client_id, secret = await gateway.app_client(kind="confidential")
    assert secret
    verifier, challenge = pkce()
    code = await gateway.code(client_id, challenge, PATIENT_SCOPES)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
    r = await gateway.http.post("/auth/token", data=form, auth=(client_id, "wrong"))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    code = await gateway.code(client_id, challenge, PATIENT_SCOPES)
    r = await gateway.http.post("/auth/token", data={**form, "code": code, "client_id": client_id})
    assert r.status_code == 401, "a confidential client must authenticate"
    code = await gateway.code(client_id, challenge, PATIENT_SCOPES)
    r = await gateway.http.post("/auth/token", data={**form, "code": code}, auth=(client_id, secret))
    assert r.status_code == 200, r.text


async def test_introspection_and_revocation_of_access_and_refresh_tokens(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client()
    tokens = await gateway.launch_tokens(client_id)
    auth = {"client_id": client_id}
    r = await gateway.http.post("/auth/introspect", data={"token": tokens["access_token"]},
                                headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert r.json()["active"] is True and r.json()["patient"] == "p1" and r.json()["client_id"] == client_id
    r = await gateway.http.post("/auth/introspect", data={"token": tokens["refresh_token"], **auth})
    assert r.status_code == 401, "public clients cannot introspect"
    system = await gateway.system_token()
    bearer = {"Authorization": f"Bearer {system}"}
    assert (await gateway.http.post("/auth/introspect", data={"token": tokens["refresh_token"]},
                                    headers=bearer)).json()["active"] is True
    assert (await gateway.http.post("/auth/revoke", data={"token": tokens["refresh_token"], **auth})).status_code == 200
    assert (await gateway.http.post("/auth/introspect", data={"token": tokens["refresh_token"]},
                                    headers=bearer)).json() == {"active": False}
    assert (await gateway.http.post("/auth/introspect", data={"token": tokens["access_token"]},
                                    headers=bearer)).json() == {"active": False}
    assert (await gateway.http.post("/auth/introspect", data={"token": "garbage"}, headers=bearer)).json() == {
        "active": False}


def test_pkce_helper_is_s256() -> None:
    verifier, challenge = pkce()
    assert challenge == base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert BASE.endswith("/fhir")


async def test_password_guessing_is_throttled_per_user(gateway: Gateway) -> None:
    client_id, _ = await gateway.app_client()
    page = await gateway.http.get("/auth/authorize", params=gateway.authorize_params(client_id, pkce()[1],
                                                                                        PATIENT_SCOPES))
    sealed = hidden(page.text, "auth_request")
    for _ in range(5):
        r = await gateway.http.post("/auth/authorize", data={"auth_request": sealed, "username": "alice",
                                                             "password": "guess"})
        assert "Wrong user name" in r.text
    r = await gateway.http.post("/auth/authorize", data={"auth_request": sealed, "username": "alice",
                                                         "password": PASSWORD})
    assert "Too many attempts" in r.text and "decision" not in r.text


async def test_under_collaborator_pseudonyms_an_external_app_is_told_its_pseudonym_of_the_launch_patient(
        tmp_path: Path) -> None:
    """The token response and the token itself (a JWT the app can read) name the subject by the
    client's pseudonym; the gateway still knows whom the token is for, and so does introspection."""
    async with running_gateway(tmp_path, collaborator_pseudonyms=True, pseudonym_secret=SECRET) as gateway:
        client_id, _ = await gateway.app_client(audience="external")
        tokens = await gateway.launch_tokens(client_id, patient="p1")
        pseudonym = gateway.app.state.services.gate.pseudonyms.of(client_id, "p1")
        assert tokens["patient"] == pseudonym != "p1"
        claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
        assert claims["patient"] == pseudonym and "p1" not in str(claims)
        principal = await gateway.app.state.auth.server.tokens.principal(tokens["access_token"])
        assert principal.patient == "p1"  # its patient/ scopes confine it to the real subject's compartment
        system = await gateway.system_token()
        introspected = await gateway.http.post("/auth/introspect", data={"token": tokens["access_token"]},
                                               headers={"Authorization": f"Bearer {system}"})
        assert introspected.json()["patient"] == pseudonym
        refreshed = await gateway.token_request(grant_type="refresh_token", refresh_token=tokens["refresh_token"],
                                                client_id=client_id)
        assert refreshed.json()["patient"] == pseudonym
        internal_id, _ = await gateway.app_client(audience="internal")
        assert (await gateway.launch_tokens(internal_id, patient="p1"))["patient"] == "p1"
