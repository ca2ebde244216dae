"""Bearer tokens: verified once, cached until they expire, forgotten on revocation.

Measured (LIBRARIES.md): pyjwt verifies about 14k RS384 and 1.6k ES384 signatures per core
per second — verifying on every request would cap the whole server, so a verified token's
Principal is kept in a bounded LRU until the token's `exp`. Revocation evicts it (the
authorization server broadcasts revocations through `gateway.cache` to every instance) and
cached entries are re-checked against the revocation list every `recheck` seconds, so a
broadcast lost while Redis was down costs at most that long.

Only asymmetric algorithms are accepted (RS256, RS384, ES384): never `none`, never HS*
(a public key used as an HMAC secret is the classic JWT confusion attack), and the key's
type must fit the algorithm. The same checks serve the authorization server's client
assertions (`verify_jwt`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import jwt
import structlog

from gateway.access.principal import Principal
from gateway.cache import Cache

log = structlog.get_logger("gateway.tokens")

ALGORITHMS: dict[str, str] = {"RS256": "RSA", "RS384": "RSA", "ES384": "EC"}
"""The allow-list: algorithm -> the JWK key type it needs."""

LEEWAY = 30
"""Seconds of clock skew tolerated on `exp`, `nbf` and `iat`."""


class InvalidToken(Exception):
    """The token is not acceptable; the message says why (it goes into `error_description`)."""


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): the `kid` of the gateway's own keys."""
    members = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


class KeySource(Protocol):
    """Where the verification keys of one signer come from."""

    async def keys(self, kid: str | None) -> list[jwt.PyJWK]:
        """The keys that may have signed a token with this `kid` (all of them when no kid is given)."""
        ...


def parse_jwks(jwks: dict[str, Any]) -> dict[str, jwt.PyJWK]:
    """Usable signature keys of a JWKS by kid (keys without kid are indexed by their thumbprint)."""
    out: dict[str, jwt.PyJWK] = {}
    for item in jwks.get("keys", []):
        if item.get("use", "sig") != "sig" or item.get("kty") not in ("RSA", "EC"):
            continue
        try:
            out[item.get("kid") or thumbprint(item)] = jwt.PyJWK(item)
        except (jwt.PyJWKError, KeyError, ValueError) as exc:
            log.warning("unusable JWK skipped", kid=item.get("kid"), error=str(exc))
    return out


def _pick(found: dict[str, jwt.PyJWK], kid: str | None) -> list[jwt.PyJWK]:
    if kid is None:
        return list(found.values())
    return [found[kid]] if kid in found else []


class StaticJwks:
    """A JWKS given once (a client's registered keys)."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self._keys = parse_jwks(jwks)

    async def keys(self, kid: str | None) -> list[jwt.PyJWK]:
        return _pick(self._keys, kid)


class RemoteJwks:
    """A JWKS fetched from a URL with httpx, cached (shared cache, so instances fetch once),
    and fetched again when a token names a kid it does not hold (the signer rotated keys) —
    at most every `min_refresh` seconds, so unknown kids cannot make us hammer the URL."""

    def __init__(self, url: str, http: httpx.AsyncClient, cache: Cache, ttl: float = 3600,
                 min_refresh: float = 10) -> None:
        self.url, self.http, self.cache, self.ttl, self.min_refresh = url, http, cache, ttl, min_refresh
        self._keys: dict[str, jwt.PyJWK] = {}
        self._loaded_at = 0.0
        self._fetched_at = 0.0

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            response = await self.http.get(self.url, timeout=5.0, headers={"Accept": "application/json"})
            response.raise_for_status()
            body = response.content
            self._keys = parse_jwks(json.loads(body))
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("JWKS fetch failed", url=self.url, error=str(exc))
            return
        self._loaded_at = time.monotonic()
        await self.cache.set(f"jwks:{self.url}", body, self.ttl)

    async def keys(self, kid: str | None) -> list[jwt.PyJWK]:
        if time.monotonic() - self._loaded_at > self.ttl:
            cached = await self.cache.get(f"jwks:{self.url}")
            if cached is not None:
                self._keys, self._loaded_at = parse_jwks(json.loads(cached)), time.monotonic()
            else:
                await self._fetch()
        found = _pick(self._keys, kid)
        if not found and time.monotonic() - self._fetched_at > self.min_refresh:
            await self._fetch()
            found = _pick(self._keys, kid)
        return found


def peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, NOT verified: only to pick the issuer and key. pyjwt's own parse costs
    about half a millisecond (it checks the base64 alphabet in Python), so the one real parse is
    left to `jwt.decode`."""
    try:
        header, payload, _ = token.split(".")
        parts = [json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))) for p in (header, payload)]
    except ValueError as exc:
        raise InvalidToken("malformed token: not a signed JWT") from exc
    if not all(isinstance(p, dict) for p in parts):
        raise InvalidToken("malformed token: not a signed JWT")
    return parts[0], parts[1]


async def verify_jwt(token: str, source: KeySource, *, audience: str | Sequence[str], issuer: str | None,
                     require: Sequence[str] = ("exp", "iss", "aud")) -> dict[str, Any]:
    """The verified claims of `token`, or InvalidToken saying what is wrong."""
    header, _ = peek(token)
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise InvalidToken(f"algorithm {alg!r} is not accepted (allowed: {', '.join(ALGORITHMS)})")
    if kid is not None and not isinstance(kid, str):
        raise InvalidToken("malformed token: kid must be a string")
    keys = [k for k in await source.keys(kid) if k.key_type == ALGORITHMS[alg]]
    if not keys:
        raise InvalidToken(f"no {ALGORITHMS[alg]} key with kid {kid!r} is known for this signer")
    last: jwt.PyJWTError | None = None
    for key in keys:
        try:
            return jwt.decode(token, key.key, algorithms=[alg], audience=audience, issuer=issuer, leeway=LEEWAY,
                              options={"require": list(require)})
        except jwt.InvalidSignatureError as exc:
            last = exc
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("token expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise InvalidToken("token not yet valid (nbf/iat in the future)") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken(f"wrong audience: expected {audience}") from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken("wrong issuer") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"token lacks the {exc.claim!r} claim") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid token: {exc}") from exc
    raise InvalidToken("signature verification failed") from last


@dataclass(frozen=True)
class Issuer:
    """A signer whose access tokens this resource server accepts (the built-in authorization
    server, or an entry of GATEWAY_TRUSTED_ISSUERS)."""

    iss: str
    audience: str
    keys: KeySource
    principal: Callable[[dict[str, Any]], Awaitable[Principal]]
    revocation_keys: Callable[[dict[str, Any]], tuple[str, ...]] = lambda _claims: ()


@dataclass(slots=True)
class _Entry:
    principal: Principal
    expires: float
    revocation_keys: tuple[str, ...]
    checked: float


Revoked = Callable[[tuple[str, ...]], Awaitable[bool]]


async def _never_revoked(_keys: tuple[str, ...]) -> bool:
    return False


class TokenVerifier:
    """Token -> Principal for the resource server: verify once, cache until `exp`."""

    def __init__(self, issuers: Sequence[Issuer], revoked: Revoked = _never_revoked, max_entries: int = 10_000,
                 recheck: float = 30.0) -> None:
        self.issuers = {i.iss: i for i in issuers}
        self.revoked = revoked
        self.max_entries = max_entries
        self.recheck = recheck
        self._cache: OrderedDict[str, _Entry] = OrderedDict()

    async def principal(self, token: str) -> Principal:
        now = time.time()
        entry = self._cache.get(token)
        if entry is not None and entry.expires > now:
            if now - entry.checked > self.recheck:
                if await self.revoked(entry.revocation_keys):
                    del self._cache[token]
                    raise InvalidToken("token revoked")
                entry.checked = now
            self._cache.move_to_end(token)
            return entry.principal
        if entry is not None:
            del self._cache[token]
        claims = await self._verify(token)
        issuer = self.issuers[claims["iss"]]
        keys = issuer.revocation_keys(claims)
        if keys and await self.revoked(keys):
            raise InvalidToken("token revoked")
        principal = await issuer.principal(claims)
        self._cache[token] = _Entry(principal, float(claims["exp"]), keys, now)
        if len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> dict[str, Any]:
        iss = peek(token)[1].get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise InvalidToken("wrong issuer: the token's issuer is not trusted here")
        return await verify_jwt(token, issuer.keys, audience=issuer.audience, issuer=issuer.iss)

    def forget(self, revocation_key: str) -> None:
        """Drop every cached token that `revocation_key` (`jti:...`, `grant:...`, `client:...`) revokes."""
        for token in [t for t, e in self._cache.items() if revocation_key in e.revocation_keys]:
            del self._cache[token]
