"""Who is asking: a client, its kind, its granted scopes and its launch context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.access.scopes import Scopes

Audience = Literal["internal", "external"]


@dataclass(frozen=True, slots=True)
class Principal:
    """`internal` principals (hospital systems, biobank staff) are governed by scopes and may see MRNs;
    `external` ones (collaborators) are also governed by consent and always get pseudonymised data."""

    client_id: str
    audience: Audience
    scopes: Scopes
    patient: str | None = None
    commercial: bool = False
    token_id: str | None = None
    expires_at: float | None = None

    @property
    def internal(self) -> bool:
        return self.audience == "internal"


DEV_PRINCIPAL = Principal("dev", "internal", Scopes.parse("system/*.cruds"))
"""The principal of every request when `GATEWAY_AUTH_DISABLED` is set (loopback development only)."""
