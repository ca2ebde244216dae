"""The back channel: token (RFC 6749 + SMART), introspection (RFC 7662), revocation (RFC 7009).

Grants: `client_credentials` for backend services (JWT assertion only), `authorization_code`
with PKCE S256, and `refresh_token`, rotated on every use. Reusing a code or a rotated
refresh token revokes the whole grant — the tokens the first use produced included —
because one of the two presenters is a thief and the server cannot tell which.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gateway.access.scopes import Scopes
from gateway.access.tokens import InvalidToken
from gateway.authserver.grants import Grant
from gateway.authserver.oauth import OAuthError
from gateway.authserver.registry import Client
from gateway.authserver.secrets import pkce_matches
from gateway.authserver.server import AuthServer, grantable

OFFLINE_LIFETIME = 30 * 86_400
ONLINE_LIFETIME = 8 * 3_600


def _grant_error(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


class TokenEndpoint:
    def __init__(self, server: AuthServer) -> None:
        self.server = server

    async def handle(self, form: Mapping[str, str], authorization: str | None) -> dict[str, Any]:
        grant_type = form.get("grant_type")
        handlers = {"client_credentials": self._client_credentials, "authorization_code": self._authorization_code,
                    "refresh_token": self._refresh_token}
        handler = handlers.get(grant_type or "")
        if handler is None:
            raise OAuthError("unsupported_grant_type", f"grant_type must be one of {', '.join(handlers)}")
        client = await self.server.clients.authenticate(form, authorization)
        return await handler(client, form)

    async def _client_credentials(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        if client.kind != "backend" or not form.get("client_assertion"):
            raise OAuthError("unauthorized_client", "client_credentials is for backend services authenticating with "
                             "a JWT client assertion")
        scopes = grantable(form.get("scope", ""), client, "backend")
        if not scopes:
            raise OAuthError("invalid_scope", "none of the requested scopes is registered for this client "
                             f"(registered: {client.scopes})")
        token, life = self.server.mint(client, " ".join(scopes))
        return {"access_token": token, "token_type": "Bearer", "expires_in": life, "scope": " ".join(scopes)}

    async def _authorization_code(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        outcome, grant = await self.server.grants.redeem_code(form.get("code", ""))
        if grant is None or grant.client_id != client.client_id:
            raise _grant_error("unknown authorization code")
        if outcome == "reused":
            await self.server.revoke(f"grant:{grant.grant_id}")
            raise _grant_error("authorization code already used; the tokens issued for it are revoked")
        if outcome == "expired":
            raise _grant_error("authorization code expired")
        if form.get("redirect_uri") != grant.redirect_uri:
            raise _grant_error("redirect_uri differs from the one of the authorization request")
        verifier = form.get("code_verifier")
        if not verifier or not pkce_matches(verifier, grant.code_challenge):
            raise _grant_error("code_verifier does not match the code_challenge (PKCE S256)")
        return await self._issue(client, grant)

    async def _refresh_token(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        outcome, grant = await self.server.grants.redeem_refresh_token(form.get("refresh_token", ""))
        if grant is None or grant.client_id != client.client_id:
            raise _grant_error("unknown refresh token")
        if outcome == "reused":
            await self.server.revoke(f"grant:{grant.grant_id}")
            raise _grant_error("refresh token already used (or revoked); every token of this grant is revoked")
        if outcome == "expired" or await self.server.grants.revoked((f"grant:{grant.grant_id}",)):
            raise _grant_error("refresh token expired or revoked")
        requested = form.get("scope")
        if requested and not Scopes.parse(requested).is_subset_of(Scopes.parse(grant.scope)):
            raise OAuthError("invalid_scope", "a refresh may narrow the granted scopes, never widen them "
                             f"(granted: {grant.scope})")
        return await self._issue(client, grant, requested)

    async def _issue(self, client: Client, grant: Grant, narrowed: str | None = None) -> dict[str, Any]:
        """Access token (for `narrowed` scopes when a refresh asked for fewer) and, with offline_access or
        online_access, a new refresh token for the grant's full scopes (RFC 6749 section 6)."""
        scope = " ".join(narrowed.split()) if narrowed else grant.scope
        patient = await self.server.patient_shown(client, grant.patient)
        token, life = self.server.mint(client, scope, subject=grant.username, patient=patient,
                                       grant_id=grant.grant_id)
        body: dict[str, Any] = {"access_token": token, "token_type": "Bearer", "expires_in": life, "scope": scope}
        if patient:
            body["patient"] = patient
        scopes = grant.scope.split()
        if "offline_access" in scopes or "online_access" in scopes:
            lifetime = OFFLINE_LIFETIME if "offline_access" in scopes else ONLINE_LIFETIME
            body["refresh_token"] = await self.server.grants.new_refresh_token(
                Grant(grant.grant_id, client.client_id, grant.username, grant.scope, grant.patient,
                      int(time.time()) + lifetime))
        return body

    async def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662: what an active token of this server stands for; `{"active": false}` for anything else."""
        try:
            principal = await self.server.tokens.principal(token)
        except InvalidToken:
            grant = await self.server.grants.refresh_token(token)
            if grant is None or await self.server.grants.revoked((f"grant:{grant.grant_id}",
                                                                  f"client:{grant.client_id}")):
                return {"active": False}
            patient = await self._patient_of(grant.client_id, grant.patient)
            return {"active": True, "token_type": "refresh_token", "client_id": grant.client_id, "scope": grant.scope,
                    "sub": grant.username, "exp": grant.expires_at, "iss": self.server.endpoints.issuer,
                    **({"patient": patient} if patient else {})}
        body: dict[str, Any] = {"active": True, "token_type": "Bearer", "client_id": principal.client_id,
                                "scope": str(principal.scopes), "exp": int(principal.expires_at or 0),
                                "iss": self.server.endpoints.issuer, "aud": self.server.endpoints.fhir_base}
        if patient := await self._patient_of(principal.client_id, principal.patient):
            body["patient"] = patient
        return body

    async def _patient_of(self, client_id: str, patient: str | None) -> str | None:
        """A token's patient as its client knows it (the pseudonym it was given, when it has those)."""
        client = await self.server.registry.client(client_id) if patient else None
        return await self.server.patient_shown(client, patient) if client is not None else patient

    async def revoke(self, client: Client, token: str) -> None:
        """RFC 7009: revoke one of the client's own tokens; unknown tokens are not an error."""
        try:
            principal = await self.server.tokens.principal(token)
        except InvalidToken:
            grant = await self.server.grants.refresh_token(token)
            if grant is not None and grant.client_id == client.client_id:
                await self.server.revoke(f"grant:{grant.grant_id}", grant.expires_at)
            return
        if principal.client_id == client.client_id and principal.token_id:
            await self.server.revoke(f"jti:{principal.token_id}", principal.expires_at)
