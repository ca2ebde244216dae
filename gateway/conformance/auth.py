"""SMART Backend Services, client side: the runner gets its own token with a key from the command line.

https://hl7.org/fhir/smart-app-launch/backend-services.html — a signed JWT client assertion
(`iss` = `sub` = client id, `aud` = token endpoint, `exp` at most 5 minutes ahead, a fresh
`jti`) exchanged for an access token with `grant_type=client_credentials`. Written with
plain httpx and pyjwt so it works against any SMART server, not only ours.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class AuthError(RuntimeError):
    """The runner could not get a token: the message says which step failed and what came back."""


class BackendClient:
    """A registered backend-services client: its id and its private key (RSA -> RS384, EC P-384 -> ES384)."""

    def __init__(self, client_id: str, key_file: Path) -> None:
        self.client_id = client_id
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            self.alg = "RS384"
            public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            self.alg = "ES384"
            public = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        else:
            raise AuthError(f"{key_file}: only RSA (RS384) and EC P-384 (ES384) keys are supported")
        self._key = key
        self.kid = thumbprint(public)

    def assertion(self, token_endpoint: str, lifetime: int = 240) -> str:
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": token_endpoint, "iat": now,
                  "exp": now + lifetime, "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self._key, algorithm=self.alg, headers={"kid": self.kid, "typ": "JWT"})


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint: the `kid` servers are told to expect (INTERFACES.md, EHR credentials)."""
    members = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def smart_configuration(http: httpx.Client, base: str) -> dict[str, Any] | None:
    """The target's SMART discovery document, or None when it publishes none."""
    try:
        response = http.get(f"{base}/.well-known/smart-configuration", headers={"Accept": "application/json"})
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def default_scope(configuration: dict[str, Any], writes: bool) -> str:
    """All system-level access the run needs, in the scope syntax the server says it speaks."""
    capabilities = set(configuration.get("capabilities") or [])
    v2_only = "permission-v2" in capabilities and "permission-v1" not in capabilities
    if v2_only:
        return "system/*.cruds" if writes else "system/*.rs"
    return "system/*.*" if writes else "system/*.read"


def backend_token(http: httpx.Client, base: str, client: BackendClient, scope: str | None, writes: bool) -> str:
    configuration = smart_configuration(http, base)
    if configuration is None or not configuration.get("token_endpoint"):
        raise AuthError(f"{base}/.well-known/smart-configuration names no token_endpoint: cannot do backend services")
    endpoint = configuration["token_endpoint"]
    form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client.assertion(endpoint), "scope": scope or default_scope(configuration, writes)}
    response = http.post(endpoint, data=form, headers={"Accept": "application/json"})
    if response.status_code != 200:
        raise AuthError(f"token endpoint {endpoint} answered {response.status_code}: {response.text[:500]}")
    token = response.json().get("access_token")
    if not token:
        raise AuthError(f"token endpoint {endpoint} answered without access_token: {response.text[:500]}")
    return str(token)
