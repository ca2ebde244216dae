"""What the authorization server announces: SMART discovery and the CapabilityStatement's
`rest.security`, built from the same Endpoints so they cannot disagree.

SMART App Launch 2.x, "Conformance" (well-known/smart-configuration): every required and
recommended field the server really supports, nothing more — `sso-openid-connect` is not
listed because OpenID Connect is not built (openid/fhirUser scopes are dropped from grants).
"""

from __future__ import annotations

from typing import Any

from gateway.authserver.endpoints import Endpoints

SIGNING_ALGS = ["RS384", "ES384"]
"""What client assertions may be signed with (RS256 is accepted too, but not advertised)."""

CAPABILITIES = [
    "launch-standalone", "launch-ehr", "client-public", "client-confidential-symmetric",
    "client-confidential-asymmetric", "context-standalone-patient", "context-ehr-patient",
    "permission-v1", "permission-v2", "permission-patient", "permission-user", "permission-offline",
    "permission-online",
]

SCOPES_SUPPORTED = [
    "launch", "launch/patient", "offline_access", "online_access",
    "patient/*.read", "patient/*.rs", "user/*.read", "user/*.rs", "user/*.cruds",
    "system/*.read", "system/*.rs", "system/*.cruds",
]
"""The wildcard forms; any narrower resource scope (type, v2 letters, granular `?param=`) works too."""


def smart_configuration(endpoints: Endpoints) -> dict[str, Any]:
    return {
        "issuer": endpoints.issuer,
        "jwks_uri": endpoints.jwks,
        "authorization_endpoint": endpoints.authorize,
        "token_endpoint": endpoints.token,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": SIGNING_ALGS,
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "registration_endpoint_supported": False,
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "introspection_endpoint": endpoints.introspect,
        "revocation_endpoint": endpoints.revoke,
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
    }


def capability_security(endpoints: Endpoints) -> dict[str, Any]:
    """CapabilityStatement.rest.security: the SMART-on-FHIR service and its oauth-uris extension."""
    uris = [("authorize", endpoints.authorize), ("token", endpoints.token), ("introspect", endpoints.introspect),
            ("revoke", endpoints.revoke)]
    return {
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [{"url": name, "valueUri": uri} for name, uri in uris],
        }],
        "service": [{
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR"}],
            "text": "OAuth2 using SMART-on-FHIR profile (see /fhir/.well-known/smart-configuration)",
        }],
        "cors": True,
        "description": "SMART App Launch 2.x and SMART Backend Services; v1 and v2 scopes",
    }
