"""The public URLs of the authorization server, derived from the FHIR base (`GATEWAY_BASE_URL`).

The FHIR API is mounted at `/fhir` and the authorization server at `/auth` of the same
origin and path prefix, so `http://host/x/fhir` gives `http://host/x/auth/token` and so on.
Tokens' `aud` is the FHIR base; their `iss` is the `/auth` URL.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Endpoints:
    fhir_base: str
    issuer: str

    @classmethod
    def from_base(cls, base_url: str) -> Endpoints:
        base = base_url.rstrip("/")
        root = base.removesuffix("/fhir")
        return cls(base, f"{root}/auth")

    @property
    def authorize(self) -> str:
        return f"{self.issuer}/authorize"

    @property
    def token(self) -> str:
        return f"{self.issuer}/token"

    @property
    def introspect(self) -> str:
        return f"{self.issuer}/introspect"

    @property
    def revoke(self) -> str:
        return f"{self.issuer}/revoke"

    @property
    def jwks(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def launch(self) -> str:
        return f"{self.issuer}/launch"
