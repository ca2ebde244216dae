"""The built-in authorization server as one object: keys, registry, grants, client
authentication, token minting, scope granting and revocation broadcast.

Built once per process in the app's lifespan (and by the CLI). Revocations are written to
the database first and then broadcast on the shared cache's `auth:revoked` channel, so
every instance's token cache forgets the revoked tokens at once; an instance that missed
the broadcast (Redis down) still finds them in the database on its periodic re-check.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Literal

import httpx

from gateway.access.principal import Principal
from gateway.access.pseudonyms import Pseudonyms
from gateway.access.scopes import Scopes, parse_scope
from gateway.access.tokens import InvalidToken, Issuer, TokenVerifier
from gateway.authserver.clientauth import ClientAuthenticator
from gateway.authserver.endpoints import Endpoints
from gateway.authserver.grants import Grants
from gateway.authserver.keys import KeyRing
from gateway.authserver.registry import Client, Registry
from gateway.cache import Cache
from gateway.settings import Settings
from gateway.store.database import Database

CONTEXT_SCOPES = frozenset({"launch", "launch/patient", "offline_access", "online_access"})
"""Non-resource scopes this server understands; others (`openid`, `fhirUser`, ...) are dropped from grants."""

REVOKED_CHANNEL = "auth:revoked"
Flow = Literal["app", "backend"]


def grantable(requested: str, client: Client, flow: Flow) -> list[str]:
    """Requested scopes ∩ the client's registered ones, in request order.

    `system/` scopes only for backend services, `patient/` and `user/` only for apps;
    scopes the server does not support are left out, not an error (INTERFACES.md).
    """
    out = []
    for scope in dict.fromkeys(requested.split()):
        parsed = parse_scope(scope)
        if parsed is None:
            if flow == "app" and scope in CONTEXT_SCOPES and scope in client.scopes.raw:
                out.append(scope)
        elif (parsed.context == "system") == (flow == "backend") and Scopes.parse(scope).is_subset_of(client.scopes):
            out.append(scope)
    return out


class AuthServer:
    def __init__(self, settings: Settings, db: Database, cache: Cache, http: httpx.AsyncClient,
                 pseudonyms: Pseudonyms | None = None) -> None:
        """`pseudonyms`: per-collaborator pseudonyms when they are on; the launch patient of an
        external client's token is then its pseudonym (a JWT is readable by the app it is for)."""
        self.settings = settings
        self.pseudonyms = pseudonyms
        self.endpoints = Endpoints.from_base(settings.base_url)
        self.keys = KeyRing.open(settings.data_dir)
        self.registry = Registry(db)
        self.grants = Grants(db)
        self.cache = cache
        self.clients = ClientAuthenticator(self.registry, cache, http, self.endpoints.token, cache.resilient())
        self._forget: list[Callable[[str], None]] = []
        self.tokens = self.verifier()
        """This server's own tokens only (introspection, revocation)."""

    def listen(self) -> None:
        """Follow revocations made by other instances and the CLI (servers only; the CLI just publishes)."""
        self.cache.subscribe(REVOKED_CHANNEL, lambda message: self._forgotten(message.decode()))

    def _forgotten(self, key: str) -> None:
        for forget in self._forget:
            forget(key)

    def mint(self, client: Client, scope: str, *, subject: str | None = None, patient: str | None = None,
             grant_id: str | None = None, lifetime: int | None = None) -> tuple[str, int]:
        """A signed access token and its lifetime in seconds."""
        now = int(time.time())
        life = lifetime or self.settings.token_lifetime
        claims: dict[str, Any] = {
            "iss": self.endpoints.issuer, "aud": self.endpoints.fhir_base, "sub": subject or client.client_id,
            "client_id": client.client_id, "scope": scope, "iat": now, "exp": now + life, "jti": uuid.uuid4().hex,
        }
        if patient:
            claims["patient"] = patient
        if grant_id:
            claims["grant"] = grant_id
        return self.keys.sign(claims), life

    async def revoke(self, key: str, expires_at: float | None = None) -> None:
        """Revoke `jti:..`, `grant:..` or `client:..` everywhere: database, then broadcast."""
        until = expires_at or time.time() + max(self.settings.token_lifetime, 86_400 * 30)
        await self.grants.revoke(key, until)
        await self.cache.resilient().publish(REVOKED_CHANNEL, key.encode())

    def issuer(self) -> Issuer:
        """This server as an issuer the resource server trusts."""

        async def principal(claims: dict[str, Any]) -> Principal:
            client = await self.registry.client(str(claims.get("client_id")))
            if client is None or client.disabled:
                raise InvalidToken("the token's client is unknown or disabled")
            return Principal(client.client_id, client.audience, Scopes.parse(str(claims.get("scope", ""))),
                             patient=await self.patient_meant(client, claims.get("patient")),
                             commercial=client.commercial, token_id=claims.get("jti"), expires_at=float(claims["exp"]))

        def revocation_keys(claims: dict[str, Any]) -> tuple[str, ...]:
            keys = [f"jti:{claims.get('jti')}", f"client:{claims.get('client_id')}"]
            if claims.get("grant"):
                keys.append(f"grant:{claims['grant']}")
            return tuple(keys)

        return Issuer(self.endpoints.issuer, self.endpoints.fhir_base, self.keys, principal, revocation_keys)

    async def patient_shown(self, client: Client, patient: str | None) -> str | None:
        """The launch patient as this client is told it: for an external client under per-collaborator
        pseudonyms its pseudonym of the subject code (recorded, so it resolves on the way back in)."""
        if patient is None or self.pseudonyms is None or client.audience == "internal":
            return patient
        pseudonym = self.pseudonyms.of(client.client_id, patient)
        await self.pseudonyms.record(client.client_id, {patient: pseudonym})
        return pseudonym

    async def patient_meant(self, client: Client, shown: str | None) -> str | None:
        """The subject code behind a token's `patient` claim (`patient_shown` undone)."""
        if shown is None or self.pseudonyms is None or client.audience == "internal":
            return shown
        subjects, _ = await self.pseudonyms.resolve(client.client_id, [shown])
        if shown not in subjects:
            raise InvalidToken("the token's patient is not one this client was given")
        return subjects[shown]

    def verifier(self, trusted: Sequence[Issuer] = ()) -> TokenVerifier:
        """The resource server's verifier: this server's tokens and the trusted issuers', forgetting revoked ones."""
        verifier = TokenVerifier([self.issuer(), *trusted], revoked=self.grants.revoked)
        self._forget.append(verifier.forget)
        return verifier
