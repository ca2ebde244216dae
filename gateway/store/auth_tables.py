"""Tables of the built-in SMART authorization server, on the store's `metadata`.

Secrets are never stored: client secrets, authorization codes and refresh tokens are kept
as SHA-256 digests (they are long random strings, so a digest is enough), user passwords
as scrypt hashes. `grant` ties together everything one authorization produced (its code,
its refresh tokens, the access tokens they minted), so reuse of a code or of a rotated
refresh token revokes the whole family (RFC 6749 section 10.5, OAuth 2.0 Security BCP 4.14).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, String, Table, Text

from gateway.store.schema import metadata

auth_clients = Table(
    "auth_clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False, doc="backend, public or confidential"),
    Column("audience", String(16), nullable=False, doc="internal or external"),
    Column("scopes", Text, nullable=False, doc="space-separated: the most any token of this client gets"),
    Column("secret_hash", String(64), nullable=True),
    Column("jwks", Text, nullable=True, doc="registered JWKS (JSON)"),
    Column("jwks_uri", String(2000), nullable=True),
    Column("redirect_uris", Text, nullable=False, doc="JSON list"),
    Column("commercial", Boolean, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

auth_users = Table(
    "auth_users",
    metadata,
    Column("username", String(200), primary_key=True),
    Column("password_hash", String(300), nullable=False),
    Column("role", String(16), nullable=False, doc="staff or researcher"),
    Column("created_at", BigInteger, nullable=False),
)

auth_codes = Table(
    "auth_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("grant_id", String(64), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("username", String(200), nullable=False),
    Column("redirect_uri", String(2000), nullable=False),
    Column("scope", Text, nullable=False),
    Column("patient", String(64), nullable=True),
    Column("code_challenge", String(128), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("used", Boolean, nullable=False),
)

auth_refresh_tokens = Table(
    "auth_refresh_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("grant_id", String(64), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("username", String(200), nullable=False),
    Column("scope", Text, nullable=False),
    Column("patient", String(64), nullable=True),
    Column("expires_at", BigInteger, nullable=False),
    Column("used", Boolean, nullable=False, doc="rotated: presenting it again revokes the grant"),
    Index("ix_auth_refresh_grant", "grant_id"),
)

auth_launches = Table(
    "auth_launches",
    metadata,
    Column("launch_id", String(64), primary_key=True),
    Column("patient", String(64), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

auth_revocations = Table(
    "auth_revocations",
    metadata,
    Column("key", String(200), primary_key=True, doc="jti:<id>, grant:<id> or client:<id>"),
    Column("expires_at", BigInteger, nullable=False, doc="when no token it revokes can still be valid"),
)
