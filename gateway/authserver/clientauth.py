"""Who is calling the token, introspection and revocation endpoints.

Three ways, by client kind (SMART App Launch 2.x "client authentication"):
- `private_key_jwt` (backend services, asymmetric confidential apps): a JWT client assertion
  signed RS384/ES384 (RS256 accepted) with one of the client's registered keys (its JWKS or
  jwks_uri), `iss` = `sub` = client_id, `aud` = the token endpoint, `exp` at most five
  minutes ahead, and a `jti` never seen before. The jti is remembered in the shared cache
  until the assertion expires, so a replay is refused by every instance; when Redis is
  configured but down the assertion is refused (fail closed, issue 12), never accepted
  on this instance's word alone.
- `client_secret_basic` (symmetric confidential apps);
- public apps: `client_id` only (their security is PKCE).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from urllib.parse import unquote

import httpx

from gateway.access.tokens import InvalidToken, KeySource, RemoteJwks, StaticJwks, peek, verify_jwt
from gateway.authserver.oauth import OAuthError
from gateway.authserver.registry import Client, Registry
from gateway.authserver.secrets import same_digest
from gateway.cache import Cache, CacheUnavailable

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LIFETIME = 300


def _invalid_client(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, 401)


def claimed_client_id(form: Mapping[str, str], authorization: str | None) -> str | None:
    """The client id a request claims, before any check (rate-limit keys, error messages)."""
    if authorization and authorization.lower().startswith("basic "):
        try:
            return unquote(base64.b64decode(authorization[6:]).decode().partition(":")[0])
        except ValueError:
            return None
    if assertion := form.get("client_assertion"):
        try:
            return str(peek(assertion)[1].get("iss"))
        except InvalidToken:
            return None
    return form.get("client_id")


class ClientAuthenticator:
    def __init__(self, registry: Registry, jti_store: Cache, http: httpx.AsyncClient, token_endpoint: str,
                 shared: Cache) -> None:
        self.registry = registry
        self.jti_store = jti_store
        self.http = http
        self.token_endpoint = token_endpoint
        self.shared = shared
        self._remote: dict[str, RemoteJwks] = {}

    async def authenticate(self, form: Mapping[str, str], authorization: str | None) -> Client:
        """The authenticated client, or OAuthError invalid_client (401)."""
        if authorization and authorization.lower().startswith("basic "):
            return await self._basic(authorization)
        if form.get("client_assertion") or form.get("client_assertion_type"):
            if form.get("client_assertion_type") != JWT_BEARER:
                raise _invalid_client(f"client_assertion_type must be {JWT_BEARER}")
            return await self._assertion(form.get("client_assertion", ""), form.get("client_id"))
        client = await self._enabled(form.get("client_id"))
        if client.kind != "public":
            raise _invalid_client(f"client {client.client_id} must authenticate (client_secret_basic or "
                                  "private_key_jwt)")
        return client

    async def _enabled(self, client_id: str | None) -> Client:
        client = await self.registry.client(client_id) if client_id else None
        if client is None or client.disabled:
            raise _invalid_client("unknown or disabled client")
        return client

    async def _basic(self, authorization: str) -> Client:
        try:
            user, _, secret = base64.b64decode(authorization[6:], validate=True).decode().partition(":")
        except ValueError as exc:
            raise _invalid_client("malformed Basic credentials") from exc
        client = await self._enabled(unquote(user))
        if client.secret_hash is None or not same_digest(unquote(secret), client.secret_hash):
            raise _invalid_client("wrong client secret")
        return client

    def keys_of(self, client: Client) -> KeySource:
        if client.jwks is not None:
            return StaticJwks(client.jwks)
        if client.jwks_uri is None:
            raise _invalid_client(f"client {client.client_id} has no registered keys")
        remote = self._remote.get(client.client_id)
        if remote is None or remote.url != client.jwks_uri:
            remote = self._remote[client.client_id] = RemoteJwks(client.jwks_uri, self.http, self.shared)
        return remote

    async def _assertion(self, assertion: str, form_client_id: str | None) -> Client:
        try:
            unverified = peek(assertion)[1]
        except InvalidToken as exc:
            raise _invalid_client("client_assertion is not a JWT") from exc
        client_id = unverified.get("iss")
        if not isinstance(client_id, str) or unverified.get("sub") != client_id:
            raise _invalid_client("client_assertion: iss and sub must both be the client_id")
        if form_client_id and form_client_id != client_id:
            raise _invalid_client("client_id does not match the client_assertion's iss")
        client = await self._enabled(client_id)
        if not client.asymmetric:
            raise _invalid_client(f"client {client_id} is not registered with keys")
        try:
            claims = await verify_jwt(assertion, self.keys_of(client), audience=self.token_endpoint, issuer=client_id,
                                      require=("exp", "iss", "sub", "aud", "jti"))
        except InvalidToken as exc:
            raise _invalid_client(f"client_assertion: {exc}") from exc
        remaining = float(claims["exp"]) - time.time()
        if remaining > MAX_ASSERTION_LIFETIME:
            raise _invalid_client(f"client_assertion: exp is more than {MAX_ASSERTION_LIFETIME} s ahead")
        await self._first_use(client_id, str(claims["jti"]), remaining)
        return client

    async def _first_use(self, client_id: str, jti: str, remaining: float) -> None:
        """Remember the jti until the assertion expires; refuse it if it was seen (on any instance)."""
        try:
            fresh = await self.jti_store.add(f"jti:{client_id}:{jti}", b"1", max(remaining, 0) + 60)
        except CacheUnavailable as exc:
            raise OAuthError("temporarily_unavailable", "client assertions cannot be checked for replay right now "
                             "(the shared replay store, Redis, is unreachable); retry later", 503,
                             {"Retry-After": "5"}) from exc
        if not fresh:
            raise _invalid_client("client_assertion: this jti was used before (replay refused)")
