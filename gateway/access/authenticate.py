"""Turning a request into a Principal: the Bearer token (RFC 6750) through the TokenVerifier.

Tokens come from the built-in authorization server or from the external authorization
servers of `GATEWAY_TRUSTED_ISSUERS` (INTERFACES.md, "Principals and scopes"). With
`GATEWAY_AUTH_DISABLED` every request is the dev principal (loopback development only).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from starlette.requests import Request

from gateway.access.principal import DEV_PRINCIPAL, Audience, Principal
from gateway.access.scopes import Scopes
from gateway.access.tokens import InvalidToken, Issuer, RemoteJwks, TokenVerifier
from gateway.cache import Cache
from gateway.fhir.errors import FhirError
from gateway.settings import Settings

Authenticator = Callable[[Request], Awaitable[Principal]]


def unauthorized(description: str) -> FhirError:
    """401 per RFC 6750, with the OperationOutcome body the gateway always sends."""
    quoted = description.replace('"', "'")
    return FhirError.of(401, "login", description,
                        headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{quoted}"'})


def _no_credentials() -> FhirError:
    """RFC 6750 section 3.1: a request without credentials gets the challenge without an error code."""
    return FhirError.of(401, "login", "this request needs a Bearer token (Authorization: Bearer <token>); "
                        "see /fhir/.well-known/smart-configuration for how to get one",
                        headers={"WWW-Authenticate": 'Bearer realm="biobank-gateway"'})


def trusted_issuers(settings: Settings, http: httpx.AsyncClient, cache: Cache) -> list[Issuer]:
    """GATEWAY_TRUSTED_ISSUERS: `[{"iss", "jwks_uri", "audience"?: "internal"|"external"}]`."""
    try:
        entries = json.loads(settings.trusted_issuers or "[]")
    except ValueError as exc:
        raise ValueError(f"GATEWAY_TRUSTED_ISSUERS is not valid JSON: {exc}") from exc
    issuers = []
    for entry in entries:
        audience: Audience = "internal" if entry.get("audience") == "internal" else "external"

        async def principal(claims: dict[str, Any], audience: Audience = audience) -> Principal:
            client_id = claims.get("client_id") or claims.get("azp") or claims.get("sub")
            if not client_id:
                raise InvalidToken("token names no client (client_id or sub)")
            return Principal(str(client_id), audience, Scopes.parse(str(claims.get("scope", ""))),
                             patient=claims.get("patient"), token_id=claims.get("jti"),
                             expires_at=float(claims["exp"]))

        keys = RemoteJwks(entry["jwks_uri"], http, cache)
        issuers.append(Issuer(entry["iss"], settings.base_url.rstrip("/"), keys, principal))
    return issuers


def make_authenticator(settings: Settings, verifier: TokenVerifier | None = None) -> Authenticator:
    """The `Services.authenticate` of the app: dev principal when auth is disabled, else Bearer tokens."""

    async def dev(_: Request) -> Principal:
        return DEV_PRINCIPAL

    async def bearer(request: Request) -> Principal:
        header = request.headers.get("authorization")
        if not header:
            raise _no_credentials()
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("the Authorization header must be 'Bearer <token>'")
        if verifier is None:
            raise unauthorized("no token issuer is configured")
        try:
            return await verifier.principal(token)
        except InvalidToken as exc:
            raise unauthorized(str(exc)) from exc

    return dev if settings.auth_disabled else bearer
