"""Authorization codes, refresh tokens, EHR launch contexts and the revocation list.

Codes and refresh tokens are single-use: redeeming one marks it used in the same
statement that checks it was not (`UPDATE ... WHERE used = false`), so of two concurrent
redemptions exactly one wins. Presenting a used one is treated as theft (OAuth 2.0
Security BCP 4.13/4.14): the caller revokes the whole grant, including the access tokens
the first use produced.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Literal

from gateway.authserver.secrets import digest, new_secret
from gateway.store.database import Database

CODE_LIFETIME = 300
LAUNCH_LIFETIME = 300


@dataclass(frozen=True, slots=True)
class Grant:
    """What a code or refresh token stands for."""

    grant_id: str
    client_id: str
    username: str
    scope: str
    patient: str | None
    expires_at: int
    redirect_uri: str = ""
    code_challenge: str = ""


Redeemed = tuple[Literal["ok", "unknown", "reused", "expired"], Grant | None]


class Grants:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def new_code(self, grant: Grant) -> str:
        code = new_secret()
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO auth_codes (code_hash, grant_id, client_id, username, redirect_uri, scope, patient, "
                "code_challenge, expires_at, used) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (digest(code), grant.grant_id, grant.client_id, grant.username, grant.redirect_uri, grant.scope,
                 grant.patient, grant.code_challenge, int(time.time()) + CODE_LIFETIME, False),
            )
        return code

    async def redeem_code(self, code: str) -> Redeemed:
        return await self._redeem(
            "auth_codes", "code_hash", code,
            "grant_id, client_id, username, scope, patient, expires_at, redirect_uri, code_challenge")

    async def new_refresh_token(self, grant: Grant) -> str:
        token = new_secret()
        async with self.db.transaction() as tx:
            await tx.execute(
                "INSERT INTO auth_refresh_tokens (token_hash, grant_id, client_id, username, scope, patient, "
                "expires_at, used) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (digest(token), grant.grant_id, grant.client_id, grant.username, grant.scope, grant.patient,
                 grant.expires_at, False),
            )
        return token

    async def redeem_refresh_token(self, token: str) -> Redeemed:
        return await self._redeem("auth_refresh_tokens", "token_hash", token,
                                  "grant_id, client_id, username, scope, patient, expires_at")

    async def refresh_token(self, token: str) -> Grant | None:
        """An unused, unexpired refresh token's grant (introspection), without using it."""
        row = await self.db.fetchone(
            "SELECT grant_id, client_id, username, scope, patient, expires_at FROM auth_refresh_tokens "
            "WHERE token_hash = ? AND used = ? AND expires_at > ?", (digest(token), False, int(time.time())))
        return Grant(*row) if row else None

    async def _redeem(self, table: str, key: str, secret: str, columns: str) -> Redeemed:
        hashed = digest(secret)
        async with self.db.transaction() as tx:
            row = await tx.fetchone(f"SELECT {columns}, used FROM {table} WHERE {key} = ?", (hashed,))
            if row is None:
                return "unknown", None
            grant = Grant(*row[:-1])
            if row[-1] or await tx.execute(f"UPDATE {table} SET used = ? WHERE {key} = ? AND used = ?",
                                           (True, hashed, False)) == 0:
                return "reused", grant
        return ("expired", grant) if grant.expires_at <= time.time() else ("ok", grant)

    async def new_launch(self, patient: str) -> str:
        launch = uuid.uuid4().hex
        async with self.db.transaction() as tx:
            await tx.execute("INSERT INTO auth_launches (launch_id, patient, expires_at) VALUES (?, ?, ?)",
                             (launch, patient, int(time.time()) + LAUNCH_LIFETIME))
        return launch

    async def launch_patient(self, launch: str) -> str | None:
        row = await self.db.fetchone("SELECT patient FROM auth_launches WHERE launch_id = ? AND expires_at > ?",
                                     (launch, int(time.time())))
        return row[0] if row else None

    async def revoke(self, key: str, expires_at: float) -> None:
        """Record `key` (`jti:..`, `grant:..`, `client:..`) as revoked until `expires_at`."""
        async with self.db.transaction() as tx:
            updated = await tx.execute("UPDATE auth_revocations SET expires_at = ? WHERE key = ? AND expires_at < ?",
                                       (int(expires_at), key, int(expires_at)))
            if not updated and not await tx.fetchone("SELECT 1 FROM auth_revocations WHERE key = ?", (key,)):
                await tx.execute("INSERT INTO auth_revocations (key, expires_at) VALUES (?, ?)",
                                 (key, int(expires_at)))
            if key.startswith("grant:"):
                await tx.execute("UPDATE auth_refresh_tokens SET used = ? WHERE grant_id = ?",
                                 (True, key.removeprefix("grant:")))

    async def revoked(self, keys: tuple[str, ...]) -> bool:
        if not keys:
            return False
        marks = ",".join("?" * len(keys))
        row = await self.db.fetchone(f"SELECT 1 FROM auth_revocations WHERE key IN ({marks}) LIMIT 1", keys)
        return row is not None

    async def purge(self) -> None:
        """Drop what can no longer matter (expired codes, tokens, launches, revocations)."""
        now = int(time.time())
        async with self.db.transaction() as tx:
            for table in ("auth_codes", "auth_refresh_tokens", "auth_launches", "auth_revocations"):
                await tx.execute(f"DELETE FROM {table} WHERE expires_at < ?", (now - 86_400,))
