"""An in-process gateway with authentication on, a small biobank and the helpers a SMART client
needs: client keys, assertions, the authorization pages driven without a browser."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from gateway.app import create_app
from gateway.authserver import AuthService
from tests.conftest import make_settings

BASE = "http://testserver/fhir"
TOKEN_URL = "http://testserver/auth/token"
REDIRECT = "https://app.example.org/callback"
SUBJECT_SYSTEM = "https://biobank.massgeneral.org/fhir/sid/subject"
PASSWORD = "correct horse battery"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

BIOBANK: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "p1", "identifier": [{"system": SUBJECT_SYSTEM, "value": "BB-0001"}]},
    {"resourceType": "Patient", "id": "p2", "identifier": [{"system": SUBJECT_SYSTEM, "value": "BB-0002"}]},
    {"resourceType": "Specimen", "id": "s1", "status": "available", "subject": {"reference": "Patient/p1"}},
    {"resourceType": "Specimen", "id": "s2", "status": "available", "subject": {"reference": "Patient/p2"}},
    {"resourceType": "Consent", "id": "c1", "status": "active", "scope": {"text": "research"},
     "category": [{"text": "research"}], "patient": {"reference": "Patient/p1"}},
]


@dataclass
class KeyPair:
    """A client's signing key and its public JWKS."""

    private: Any
    alg: str
    kid: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def rsa(cls, alg: str = "RS384") -> KeyPair:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048), alg)

    @classmethod
    def ec(cls) -> KeyPair:
        return cls(ec.generate_private_key(ec.SECP384R1()), "ES384")

    def jwks(self) -> dict[str, Any]:
        algorithm = ECAlgorithm if self.alg.startswith("ES") else RSAAlgorithm
        jwk = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        jwk.update(kid=self.kid, alg=self.alg, use="sig")
        return {"keys": [jwk]}


def assertion(client_id: str, key: KeyPair, **claims: Any) -> str:
    """A SMART Backend Services client assertion; `claims` override the defaults."""
    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": now + 240, "iat": now,
            "jti": uuid.uuid4().hex, **claims}
    return jwt.encode(body, key.private, algorithm=key.alg, headers={"kid": key.kid})


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden field {name} in page"
    return found.group(1).replace("&amp;", "&")


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class Gateway:
    """The gateway under test and a SMART client's view of it."""

    http: httpx.AsyncClient
    app: FastAPI

    @property
    def auth(self) -> AuthService:
        return self.app.state.auth

    async def backend(self, scopes: str = "system/*.rs", audience: str = "internal",
                      key: KeyPair | None = None) -> tuple[str, KeyPair]:
        key = key or KeyPair.rsa()
        client, _ = await self.auth.server.registry.add_client(name="EHR", kind="backend", audience=audience,
                                                               scopes=scopes, jwks=key.jwks())
        return client.client_id, key

    async def token_request(self, **form: str) -> httpx.Response:
        return await self.http.post("/auth/token", data=form)

    async def backend_token(self, client_id: str, key: KeyPair, scope: str = "system/*.rs") -> httpx.Response:
        return await self.token_request(
            grant_type="client_credentials", scope=scope,
            client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            client_assertion=assertion(client_id, key))

    async def system_token(self, scopes: str = "system/*.rs", audience: str = "internal") -> str:
        client_id, key = await self.backend(scopes, audience)
        r = await self.backend_token(client_id, key, scopes)
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    async def app_client(self, scopes: str = "launch/patient offline_access patient/*.rs", kind: str = "public",
                         audience: str = "internal") -> tuple[str, str | None]:
        client, secret = await self.auth.server.registry.add_client(
            name="Collaborator app", kind=kind, audience=audience, scopes=scopes, redirect_uris=(REDIRECT,))
        return client.client_id, secret

    def authorize_params(self, client_id: str, challenge: str, scope: str, **extra: str) -> dict[str, str]:
        return {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": scope,
                "state": "st-123", "aud": BASE, "code_challenge": challenge, "code_challenge_method": "S256", **extra}

    async def sign_in(self, params: dict[str, str], username: str = "alice") -> str:
        """GET the authorization page and sign in; the consent page's HTML."""
        page = await self.http.get("/auth/authorize", params=params)
        assert page.status_code == 200, page.text
        signed_in = await self.http.post("/auth/authorize", data={
            "auth_request": hidden(page.text, "auth_request"), "username": username, "password": PASSWORD})
        assert signed_in.status_code == 200, signed_in.text
        return signed_in.text

    async def code(self, client_id: str, challenge: str, scope: str, patient: str | None = "p1",
                   approve: list[str] | None = None, **extra: str) -> str:
        """Drive the pages like a person: sign in, pick the subject, approve; the code from the redirect."""
        consent = await self.sign_in(self.authorize_params(client_id, challenge, scope, **extra))
        form: dict[str, Any] = {"auth_request": hidden(consent, "auth_request"), "decision": "approve",
                                "scope": approve if approve is not None else re.findall(r'name="scope" value="([^"]*)"',
                                                                                       consent)}
        if patient:
            form["patient"] = patient
        done = await self.http.post("/auth/authorize", data=form)
        assert done.status_code == 302, done.text
        query = query_of(done.headers["location"])
        assert query["state"] == "st-123"
        return query["code"]

    async def launch_tokens(self, client_id: str, scope: str = "launch/patient offline_access patient/*.rs",
                            patient: str = "p1", **extra: str) -> dict[str, Any]:
        verifier, challenge = pkce()
        code = await self.code(client_id, challenge, scope, patient, **extra)
        r = await self.token_request(grant_type="authorization_code", code=code, redirect_uri=REDIRECT,
                                     code_verifier=verifier, client_id=client_id)
        assert r.status_code == 200, r.text
        return r.json()

    async def get(self, path: str, token: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(path, headers={"Authorization": f"Bearer {token}"}, **kwargs)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    """A gateway with authentication on (SQLite, in-process cache) holding two subjects' data."""
    async with running_gateway(tmp_path) as gateway:
        yield gateway


@asynccontextmanager
async def running_gateway(tmp_path: Path, **settings_overrides: Any) -> AsyncIterator[Gateway]:
    settings = make_settings(f"sqlite:///{tmp_path}/gateway.db", tmp_path, auth_disabled=False, **settings_overrides)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        await app.state.services.store.put_many(BIOBANK)
        await app.state.auth.server.registry.add_user("alice", PASSWORD, "staff")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Gateway(http, app)
