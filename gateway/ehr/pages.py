"""Gateway page tokens for the EHR's paging.

A Bundle's `next` link must not expose the EHR (its URL, its patient id in the query), so
the EHR's link travels inside an encrypted, authenticated token (Fernet) the gateway
mints and alone can read. The token is bound to the client it was given to and to the
query's patient and type, and expires; an altered, expired or borrowed token is refused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import orjson
from cryptography.fernet import Fernet, InvalidToken

from gateway.fhir.errors import FhirError


@dataclass(frozen=True, slots=True)
class PageState:
    type: str
    ref: str
    """The EHR's next link, relative to its base."""
    client: str
    audience: str
    patient: str | None
    ehr_patient: str | None


def _refused(why: str) -> FhirError:
    return FhirError.of(400, "invalid", f"The page token {why}: run the search again and follow its links")


class PageTokens:
    def __init__(self, fernet: Fernet, ttl: float) -> None:
        self.fernet = fernet
        self.ttl = ttl

    def mint(self, state: PageState) -> str:
        return self.fernet.encrypt(orjson.dumps(asdict(state))).decode()

    def open(self, token: str, type_: str, client: str, audience: str) -> PageState:
        try:
            state = PageState(**orjson.loads(self.fernet.decrypt(token.encode(), ttl=int(self.ttl))))
        except (InvalidToken, ValueError, TypeError) as exc:
            raise _refused("is invalid or has expired") from exc
        if (state.type, state.client, state.audience) != (type_, client, audience):
            raise _refused(f"was not issued for this client's {type_} search")
        return state
