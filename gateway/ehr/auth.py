"""SMART Backend Services at the EHR: the gateway authenticates as a system client.

https://hl7.org/fhir/smart-app-launch/backend-services.html — a `client_credentials`
grant with a `private_key_jwt` assertion signed RS384 by the gateway's key, whose `kid`
is its RFC 7638 thumbprint (INTERFACES.md, GATEWAY_EHR_PRIVATE_KEY). The access token is
kept until shortly before it expires; a 401 from the EHR drops it so the next call fetches
a new one (the client retries exactly once).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx
import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.access.tokens import thumbprint
from gateway.ehr.failures import garbage, refused_credentials

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
PostForm = Callable[[str, dict[str, str]], Awaitable[httpx.Response]]


class BackendAuth:
    def __init__(self, client_id: str, private_key_pem: bytes, scope: str, token_url: Callable[[], Awaitable[str]],
                 post_form: PostForm, clock: Callable[[], float] = time.time, margin: float = 60.0) -> None:
        self.client_id = client_id
        self.scope = scope
        self.token_url = token_url
        self.post_form = post_form
        self.clock = clock
        self.margin = margin
        self._key = load_pem_private_key(private_key_pem, password=None)
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        self.kid = thumbprint(public)
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    def assertion(self, audience: str) -> str:
        now = int(self.clock())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": audience, "iat": now, "exp": now + 300,
                  "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self._key, algorithm="RS384", headers={"kid": self.kid, "typ": "JWT"})

    async def token(self) -> str:
        """A valid access token, fetched once for all concurrent callers when none is cached."""
        if self._token is not None and self.clock() < self._expires:
            return self._token
        async with self._lock:
            if self._token is None or self.clock() >= self._expires:
                await self._fetch()
            assert self._token is not None
            return self._token

    def invalidate(self, token: str) -> None:
        """The EHR refused `token` (401): forget it unless a newer one replaced it already."""
        if self._token == token:
            self._token = None

    async def _fetch(self) -> None:
        url = await self.token_url()
        response = await self.post_form(url, {
            "grant_type": "client_credentials", "scope": self.scope,
            "client_assertion_type": ASSERTION_TYPE, "client_assertion": self.assertion(url),
        })
        if response.status_code in (400, 401, 403):
            raise refused_credentials()
        try:
            body = response.json()
            token, lifetime = str(body["access_token"]), float(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError) as exc:
            raise garbage("the token endpoint's answer has no access_token") from exc
        self._token = token
        self._expires = self.clock() + max(lifetime - min(self.margin, lifetime / 10), 0.0)
