"""The authorization code flow's front channel (`/auth/authorize`), SMART App Launch 2.x.

Checked before anything is shown: the client (an app, enabled), its redirect URI (exact
match with a registered one — until that holds, errors are shown on a page, never
redirected), `response_type=code`, `state`, `aud` = the FHIR base, PKCE with S256 (plain
is refused), and for an EHR launch the `launch` context. The user then signs in, picks
the research subject (standalone `launch/patient`) and approves scopes; the code is bound
to the client, redirect URI, PKCE challenge, scopes, patient and a new grant id.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from urllib.parse import urlencode

import orjson

from gateway.access.tokens import InvalidToken, verify_jwt
from gateway.authserver.grants import Grant
from gateway.authserver.registry import Client
from gateway.authserver.server import AuthServer, grantable
from gateway.store.database import Database

SUBJECT_SYSTEM = "https://biobank.massgeneral.org/fhir/sid/subject"
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_PENDING_LIFETIME = 600


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """A checked authorization request, carried between the pages in a signed hidden field."""

    client_id: str
    redirect_uri: str
    scope: str
    state: str
    code_challenge: str
    launch_patient: str | None = None


class AuthorizeError(Exception):
    """`redirect` is the client's redirect URI with the error, or None when only a page may show it."""

    def __init__(self, message: str, redirect: str | None = None) -> None:
        super().__init__(message)
        self.redirect = redirect


def with_params(uri: str, **params: str) -> str:
    return f"{uri}{'&' if '?' in uri else '?'}{urlencode(params)}"


class Authorization:
    def __init__(self, server: AuthServer, db: Database) -> None:
        self.server = server
        self.db = db

    async def check(self, params: Mapping[str, str]) -> tuple[AuthRequest, Client]:
        client = await self.server.registry.client(params.get("client_id", ""))
        if client is None or client.disabled or client.kind == "backend":
            raise AuthorizeError("unknown or disabled client_id (backend services use client_credentials)")
        redirect_uri = params.get("redirect_uri") or (client.redirect_uris[0] if len(client.redirect_uris) == 1
                                                      else "")
        if redirect_uri not in client.redirect_uris:
            raise AuthorizeError("redirect_uri is not one registered for this client")
        state = params.get("state", "")

        def refuse(error: str, description: str) -> AuthorizeError:
            extra = {"state": state} if state else {}
            return AuthorizeError(description, with_params(redirect_uri, error=error, error_description=description,
                                                           **extra))

        if params.get("response_type") != "code":
            raise refuse("unsupported_response_type", "response_type must be code")
        if not state:
            raise refuse("invalid_request", "state is required")
        if params.get("aud", "").rstrip("/") != self.server.endpoints.fhir_base:
            raise refuse("invalid_request", f"aud must be the FHIR base URL {self.server.endpoints.fhir_base}")
        if params.get("code_challenge_method") != "S256" or not _CHALLENGE.match(params.get("code_challenge", "")):
            raise refuse("invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256 "
                         "(plain is not accepted)")
        patient = None
        if launch := params.get("launch"):
            patient = await self.server.grants.launch_patient(launch)
            if patient is None:
                raise refuse("invalid_request", "unknown or expired launch context")
        if not grantable(params.get("scope", ""), client, "app"):
            raise refuse("invalid_scope", "none of the requested scopes is registered for this client")
        return AuthRequest(client.client_id, redirect_uri, params.get("scope", ""), state,
                           params["code_challenge"], patient), client

    def seal(self, request: AuthRequest, username: str | None = None) -> str:
        now = int(time.time())
        return self.server.keys.sign({"iss": self.server.endpoints.issuer, "aud": self.server.endpoints.authorize,
                                      "iat": now, "exp": now + _PENDING_LIFETIME, "req": asdict(request),
                                      "user": username})

    async def unseal(self, sealed: str) -> tuple[AuthRequest, str | None]:
        try:
            claims = await verify_jwt(sealed, self.server.keys, audience=self.server.endpoints.authorize,
                                      issuer=self.server.endpoints.issuer)
        except InvalidToken as exc:
            raise AuthorizeError(f"the authorization request expired or was altered ({exc}); start again") from exc
        return AuthRequest(**claims["req"]), claims.get("user")

    async def subjects(self) -> list[tuple[str, str]]:
        """(Patient id, subject code) of every research subject, for the picker."""
        rows = await self.db.fetchall("SELECT id, content FROM resources WHERE type = ? AND deleted = ? ORDER BY id",
                                      ("Patient", False))
        out = []
        for id_, content in rows:
            identifiers = orjson.loads(bytes(content)).get("identifier") or []
            code = next((i.get("value") for i in identifiers if i.get("system") == SUBJECT_SYSTEM), None)
            out.append((id_, code or id_))
        return sorted(out, key=lambda item: item[1])

    async def patient_exists(self, patient: str) -> bool:
        row = await self.db.fetchone("SELECT 1 FROM resources WHERE type = ? AND id = ? AND deleted = ?",
                                     ("Patient", patient, False))
        return row is not None

    async def offered(self, request: AuthRequest) -> tuple[list[str], Client]:
        client = await self.server.registry.client(request.client_id)
        if client is None or client.disabled:
            raise AuthorizeError("the client was disabled")
        return grantable(request.scope, client, "app"), client

    def needs_subject(self, request: AuthRequest, scopes: list[str]) -> bool:
        return "launch/patient" in scopes and request.launch_patient is None

    async def approve(self, request: AuthRequest, username: str, chosen: list[str], patient: str | None) -> str:
        """The redirect that carries the new code; AuthorizeError(redirect=None) for a fixable form error."""
        offered, _ = await self.offered(request)
        scopes = [s for s in offered if s in chosen]
        if not scopes:
            raise AuthorizeError("approve at least one scope, or deny")
        if self.needs_subject(request, scopes):
            if not await self.patient_exists(patient or ""):
                raise AuthorizeError("pick a research subject")
        else:
            patient = request.launch_patient
        grant = Grant(uuid.uuid4().hex, request.client_id, username, " ".join(scopes), patient, 0,
                      request.redirect_uri, request.code_challenge)
        code = await self.server.grants.new_code(grant)
        return with_params(request.redirect_uri, code=code, state=request.state)

    @staticmethod
    def deny(request: AuthRequest) -> str:
        return with_params(request.redirect_uri, error="access_denied", error_description="the user denied access",
                           state=request.state)
