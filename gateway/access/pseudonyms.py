"""Per-collaborator stable pseudonyms of subject codes (issue 8), off unless GATEWAY_COLLABORATOR_PSEUDONYMS.

With the switch on, an external principal never receives a biobank subject code: the egress
gate writes `HMAC-SHA256(k_client, code)` in its place (160 bits, base32: a valid FHIR id),
with `k_client = HMAC-SHA256(GATEWAY_PSEUDONYM_SECRET, "subject/" + client_id)`. Stable for
one client (across restarts and instances), different between two clients and unlinkable
without the secret; no per-client secret is stored.

HMAC is one-way, so what a client sends back is resolved through the `pseudonyms` table
(client_id, pseudonym, subject): the gate writes a row the first time it discloses a
pseudonym to a client, in a transaction committed before the response leaves, so the next
request resolves it on every instance sharing the database. Chosen over computing every
subject's pseudonym per client on demand, which costs an HMAC per subject per client (and
memory per instance) and must follow every subject added: the table holds exactly what each
client was given — all it can meaningfully send back — and a lookup is one primary-key
probe. A row never changes, so the rows an instance has seen are cached in it (bounded), and
so are the pseudonyms it computed: a collaborator's search page names a subject in most of its
entries, and an HMAC costs more than the rest of renaming them.

The same secret keys, per client, the sealing of search page tokens (keyset positions carry
resource ids and sort values, which may be subject codes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from gateway.settings import Settings
from gateway.store.database import Database, one_of

CACHE_SIZE = 200_000
"""(client, pseudonym) pairs kept in process, and (client, subject) pairs named; beyond that a cache starts afresh."""
MIN_SECRET = 32
CHUNK = 500
"""Values per IN list."""


def pseudonym_secret(settings: Settings) -> bytes | None:
    """The secret when per-collaborator pseudonyms are on, None when off; refuses a switch without a secret
    (the gateway must not start and silently hand out subject codes it was told to hide)."""
    if not settings.collaborator_pseudonyms:
        return None
    secret = settings.pseudonym_secret.get_secret_value() if settings.pseudonym_secret else ""
    if len(secret) < MIN_SECRET:
        raise ValueError(f"GATEWAY_COLLABORATOR_PSEUDONYMS is on but GATEWAY_PSEUDONYM_SECRET is "
                         f"{'too short' if secret else 'not set'}: give it at least {MIN_SECRET} random characters "
                         "(e.g. `openssl rand -hex 32`), the same on every instance, and never change it (every "
                         "collaborator's pseudonyms would change)")
    return secret.encode()


class Pseudonyms:
    def __init__(self, secret: bytes, db: Database) -> None:
        self._secret = secret
        self.db = db
        self._keys: dict[str, bytes] = {}
        self._fernets: dict[str, Fernet] = {}
        self._subjects: dict[tuple[str, str], str] = {}
        """(client, pseudonym) -> subject, for every pair known to be in the table."""
        self._names: dict[tuple[str, str], str] = {}
        """(client, subject) -> pseudonym, as computed (`of`)."""

    def _derive(self, purpose: str, client_id: str) -> bytes:
        return hmac.digest(self._secret, f"{purpose}/{client_id}".encode(), hashlib.sha256)

    def of(self, client_id: str, subject: str) -> str:
        """The client's pseudonym of a subject code."""
        pseudonym = self._names.get((client_id, subject))
        if pseudonym is None:
            if len(self._names) > CACHE_SIZE:
                self._names.clear()
            pseudonym = self._names[client_id, subject] = self._hmac(client_id, subject)
        return pseudonym

    def _hmac(self, client_id: str, subject: str) -> str:
        key = self._keys.get(client_id)
        if key is None:
            key = self._keys[client_id] = self._derive("subject", client_id)
        mac = hmac.digest(key, subject.encode(), hashlib.sha256)
        return base64.b32encode(mac[:20]).decode().lower()

    def renaming(self, client_id: str) -> Renaming:
        return Renaming(self, client_id)

    def _remember(self, client_id: str, pairs: Iterable[tuple[str, str]]) -> None:
        if len(self._subjects) > CACHE_SIZE:
            self._subjects.clear()
        self._subjects.update(((client_id, p), s) for p, s in pairs)

    async def record(self, client_id: str, subjects: dict[str, str]) -> None:
        """Make sure the table holds these (subject -> pseudonym) pairs of the client before they leave."""
        new = [(client_id, p, s) for s, p in subjects.items() if (client_id, p) not in self._subjects]
        if not new:
            return
        async with self.db.transaction() as tx:
            await tx.executemany("INSERT INTO pseudonyms (client_id, pseudonym, subject) VALUES (?, ?, ?) "
                                 "ON CONFLICT DO NOTHING", new)
        self._remember(client_id, ((p, s) for _, p, s in new))

    async def resolve(self, client_id: str, written: Iterable[str], codes: Iterable[str] = ()
                      ) -> tuple[dict[str, str], set[str]]:
        """(pseudonym -> subject code, for those of `written` this client was given; those of `codes` that
        are subject codes, i.e. compartments of stored resources) — one query for both, none when cached."""
        asked = set(written)
        own = {p: s for p in asked if (s := self._subjects.get((client_id, p))) is not None}
        unknown = sorted(asked - own.keys())
        maybe = sorted(set(codes) - own.keys())
        found: set[str] = set()
        for start in range(0, max(len(unknown), len(maybe)), CHUNK):
            rows = await self._lookup(client_id, unknown[start:start + CHUNK], maybe[start:start + CHUNK])
            pairs = [(r[0], r[1]) for r in rows if r[1] is not None]
            self._remember(client_id, pairs)
            own.update(pairs)
            found.update(r[0] for r in rows if r[1] is None)
        return own, found

    async def _lookup(self, client_id: str, mine: list[str], theirs: list[str]) -> list[Any]:
        """Rows (pseudonym, subject) of `mine` given to the client, (code, NULL) of `theirs` that are subjects.
        Lookups by key, which a collaborator's every search with pseudonyms makes: on PostgreSQL on the point
        pool, with the keys as arrays, so the statement is planned once per connection (~80 us less a
        search than planned for its values); SQLite gets lists of placeholders."""
        ours, our_params = one_of(self.db.dialect, "pseudonym", mine)
        subjects, subject_params = one_of(self.db.dialect, "compartment", theirs)
        return await self.db.fetch_points(
            f"SELECT pseudonym, subject FROM pseudonyms WHERE client_id = ? AND {ours} "
            f"UNION ALL SELECT DISTINCT compartment, NULL FROM resources WHERE {subjects}",
            [client_id, *our_params, *subject_params])

    def _fernet(self, client_id: str) -> Fernet:
        fernet = self._fernets.get(client_id)
        if fernet is None:
            key = base64.urlsafe_b64encode(self._derive("page-token", client_id))
            fernet = self._fernets[client_id] = Fernet(key)
        return fernet

    def seal(self, client_id: str, token: str) -> str:
        """A search page token made opaque to (and only usable by) this client: keyset positions
        carry resource ids and sort values, which may be subject codes."""
        return self._fernet(client_id).encrypt(token.encode()).decode()

    def unseal(self, client_id: str, token: str) -> str | None:
        try:
            return self._fernet(client_id).decrypt(token.encode()).decode()
        except (InvalidToken, ValueError):
            return None


class Renaming:
    """The `rename` of one disclosure: names subjects for the client and remembers which, so that
    `record` can make them resolvable before the disclosed bytes leave."""

    def __init__(self, pseudonyms: Pseudonyms, client_id: str) -> None:
        self.pseudonyms = pseudonyms
        self.client_id = client_id
        self.named: dict[str, str] = {}

    def __call__(self, subject: str) -> str:
        pseudonym = self.named.get(subject)
        if pseudonym is None:
            pseudonym = self.named[subject] = self.pseudonyms.of(self.client_id, subject)
        return pseudonym

    async def record(self) -> None:
        if self.named:
            await self.pseudonyms.record(self.client_id, self.named)
