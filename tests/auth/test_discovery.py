"""SMART discovery, the CapabilityStatement's security block and the JWKS agree with each other."""

from __future__ import annotations

import jwt

from gateway.access.tokens import thumbprint
from tests.auth.conftest import Gateway

REQUIRED = ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint", "token_endpoint_auth_methods_supported",
            "grant_types_supported", "scopes_supported", "response_types_supported", "introspection_endpoint",
            "revocation_endpoint", "code_challenge_methods_supported", "capabilities",
            "token_endpoint_auth_signing_alg_values_supported")


async def test_smart_configuration_lists_every_field_the_inferno_kit_checks(gateway: Gateway) -> None:
    r = await gateway.http.get("/fhir/.well-known/smart-configuration")
    assert r.status_code == 200
    config = r.json()
    assert all(name in config for name in REQUIRED)
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    assert {"RS384", "ES384"} <= set(config["token_endpoint_auth_signing_alg_values_supported"])
    assert {"authorization_code", "client_credentials", "refresh_token"} <= set(config["grant_types_supported"])
    assert {"launch-standalone", "launch-ehr", "client-public", "client-confidential-symmetric",
            "client-confidential-asymmetric", "context-standalone-patient", "permission-v1", "permission-v2",
            "permission-patient", "permission-user", "permission-offline"} <= set(config["capabilities"])
    assert "sso-openid-connect" not in config["capabilities"]


async def test_capability_statement_security_agrees_with_discovery(gateway: Gateway) -> None:
    config = (await gateway.http.get("/fhir/.well-known/smart-configuration")).json()
    security = (await gateway.http.get("/fhir/metadata")).json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris == {"authorize": config["authorization_endpoint"], "token": config["token_endpoint"],
                    "introspect": config["introspection_endpoint"], "revoke": config["revocation_endpoint"]}


async def test_jwks_kid_is_the_rfc7638_thumbprint_and_rotation_keeps_old_tokens_valid(gateway: Gateway) -> None:
    token = await gateway.system_token()
    keys = (await gateway.http.get("/auth/jwks")).json()["keys"]
    assert [k["kid"] for k in keys] == [thumbprint(k) for k in keys]
    new_kid = gateway.auth.server.keys.rotate()
    keys = (await gateway.http.get("/auth/jwks")).json()["keys"]
    assert len(keys) == 2 and keys[-1]["kid"] == new_kid
    assert (await gateway.get("/fhir/Specimen/s1", token)).status_code == 200
    fresh = await gateway.system_token()
    assert jwt.get_unverified_header(fresh)["kid"] == new_kid
    assert (await gateway.get("/fhir/Specimen/s1", fresh)).status_code == 200


async def test_cors_preflight_for_a_registered_app_origin_only(gateway: Gateway) -> None:
    await gateway.app_client()
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    ok = await gateway.http.options("/auth/token", headers={"Origin": "https://app.example.org", **preflight})
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://app.example.org"
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    other = await gateway.http.options("/auth/token", headers={"Origin": "https://evil.example", **preflight})
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers


async def test_cors_headers_only_for_a_browser_and_vary_origin_for_everyone(gateway: Gateway) -> None:
    await gateway.app_client()
    token = await gateway.system_token()
    server = await gateway.get("/fhir/Specimen/s1", token)  # no Origin: a server, curl, wrk
    assert server.status_code == 200
    assert "access-control-allow-origin" not in server.headers
    assert "Origin" in server.headers.get_list("vary")
    browser = await gateway.http.get("/fhir/Specimen/s1", headers={"Authorization": f"Bearer {token}",
                                                                  "Origin": "https://app.example.org"})
    assert browser.headers["access-control-allow-origin"] == "https://app.example.org"
    assert "Origin" in browser.headers["vary"]
