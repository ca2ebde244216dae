"""Registered clients and users of the built-in authorization server (managed with the CLI).

There is no dynamic registration: the biobank decides who gets in (`biobank-gateway
clients add`). A client's registration fixes what any of its tokens can be: its kind
(how it authenticates), its audience (internal: may see MRNs; external: pseudonymised),
the most scopes it may get, its redirect URIs and keys.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from gateway.access.scopes import Scopes
from gateway.authserver.secrets import check_password, hash_password, new_secret
from gateway.authserver.secrets import digest as secret_digest
from gateway.store.database import Database, IntegrityError

Kind = Literal["backend", "public", "confidential"]
KINDS: tuple[str, ...] = ("backend", "public", "confidential")
ROLES: tuple[str, ...] = ("staff", "researcher")

_CLIENT_COLS = ("client_id, name, kind, audience, scopes, secret_hash, jwks, jwks_uri, redirect_uris, commercial, "
                "disabled")


class RegistrationError(ValueError):
    """A registration that cannot work (a backend client without keys, an app without redirect URI...)."""


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    name: str
    kind: Kind
    audience: Literal["internal", "external"]
    scopes: Scopes
    secret_hash: str | None
    jwks: dict[str, Any] | None
    jwks_uri: str | None
    redirect_uris: tuple[str, ...]
    commercial: bool
    disabled: bool

    @property
    def asymmetric(self) -> bool:
        return self.jwks is not None or self.jwks_uri is not None

    def summary(self) -> dict[str, Any]:
        """What `clients list` shows (no secrets, no keys)."""
        return {"client_id": self.client_id, "name": self.name, "kind": self.kind, "audience": self.audience,
                "scopes": str(self.scopes), "redirect_uris": list(self.redirect_uris),
                "jwks_uri": self.jwks_uri, "jwks": self.jwks is not None, "commercial": self.commercial,
                "disabled": self.disabled}


def _client(row: tuple[Any, ...]) -> Client:
    return Client(row[0], row[1], row[2], row[3], Scopes.parse(row[4]), row[5], json.loads(row[6]) if row[6] else None,
                  row[7], tuple(json.loads(row[8])), bool(row[9]), bool(row[10]))


class Registry:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_client(self, *, name: str, kind: str, audience: str = "external", scopes: str,
                         jwks: dict[str, Any] | None = None, jwks_uri: str | None = None,
                         redirect_uris: tuple[str, ...] = (), commercial: bool = False) -> tuple[Client, str | None]:
        """Register a client; returns it and its secret (confidential clients without keys only)."""
        if kind not in KINDS:
            raise RegistrationError(f"--kind must be one of {', '.join(KINDS)}")
        if audience not in ("internal", "external"):
            raise RegistrationError("--audience must be internal or external")
        if kind == "backend" and not (jwks or jwks_uri):
            raise RegistrationError("a backend client authenticates with a signed JWT: give --jwks or --jwks-url")
        if kind != "backend" and not redirect_uris:
            raise RegistrationError(f"a {kind} app needs --redirect-uri")
        if jwks is not None and not jwks.get("keys"):
            raise RegistrationError("the JWKS has no keys")
        secret = new_secret() if kind == "confidential" and not (jwks or jwks_uri) else None
        client_id = str(uuid.uuid4())
        async with self.db.transaction() as tx:
            await tx.execute(
                f"INSERT INTO auth_clients ({_CLIENT_COLS}, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (client_id, name, kind, audience, " ".join(scopes.split()),
                 secret_digest(secret) if secret else None, json.dumps(jwks) if jwks else None, jwks_uri,
                 json.dumps(list(redirect_uris)), commercial, False, int(time.time())),
            )
        found = await self.client(client_id)
        assert found is not None
        return found, secret

    async def client(self, client_id: str) -> Client | None:
        row = await self.db.fetchone(f"SELECT {_CLIENT_COLS} FROM auth_clients WHERE client_id = ?", (client_id,))
        return _client(row) if row else None

    async def clients(self) -> list[Client]:
        rows = await self.db.fetchall(f"SELECT {_CLIENT_COLS} FROM auth_clients ORDER BY created_at, client_id")
        return [_client(r) for r in rows]

    async def disable_client(self, client_id: str) -> bool:
        async with self.db.transaction() as tx:
            return await tx.execute("UPDATE auth_clients SET disabled = ? WHERE client_id = ?",
                                    (True, client_id)) > 0

    async def redirect_origins(self) -> set[str]:
        """Origins of every enabled client's redirect URIs (the CORS allow-list)."""
        rows = await self.db.fetchall("SELECT redirect_uris FROM auth_clients WHERE disabled = ?", (False,))
        origins = set()
        for (uris,) in rows:
            for uri in json.loads(uris):
                scheme, _, rest = uri.partition("://")
                origins.add(f"{scheme}://{rest.split('/', 1)[0]}")
        return origins

    async def add_user(self, username: str, password: str, role: str = "researcher") -> None:
        if role not in ROLES:
            raise RegistrationError(f"--role must be one of {', '.join(ROLES)}")
        if len(password) < 8:
            raise RegistrationError("the password must have at least 8 characters")
        try:
            async with self.db.transaction() as tx:
                await tx.execute("INSERT INTO auth_users (username, password_hash, role, created_at) "
                                 "VALUES (?, ?, ?, ?)", (username, hash_password(password), role, int(time.time())))
        except IntegrityError as exc:
            raise RegistrationError(f"user {username!r} exists already") from exc

    async def check_user(self, username: str, password: str) -> str | None:
        """The user's role when the password is right, else None."""
        row = await self.db.fetchone("SELECT password_hash, role FROM auth_users WHERE username = ?", (username,))
        if row is None:
            check_password(password, hash_password("timing-equaliser"))
            return None
        return row[1] if check_password(password, row[0]) else None
