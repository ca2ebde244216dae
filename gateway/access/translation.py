"""Subject ids as one principal writes them, for one request (per-collaborator pseudonyms).

A collaborator with pseudonyms on (gateway/access/pseudonyms.py) names subjects by its own
pseudonyms — in paths (`Patient/<p>`, `Patient/<p>/_history`, batch entries) and in search
parameters (`subject=Patient/<p>`, `patient=<p>`, `_id=<p>`, `identifier=<system>|<p>`,
chains, `_has`, `_typeFilter`). On the way in (`subject_id`, `params`) they become subject
codes for the store. What the gateway writes back for that request besides resources (which
the gate renames) — Bundle URLs, links, OperationOutcome diagnostics echoing a parameter —
is turned back into the client's words (`public_id`, `link`, `text`, `issues`, `error`), so no
subject code leaks through an error message or a page token either.

Parameter values are translated without parsing the search grammar: each id-shaped token
(`[A-Za-z0-9-.]{1,64}` between other characters) is looked at. The client's own pseudonym
becomes the subject code. After `Patient/`, anything else is made unmatchable (`!` + token:
no stored id contains `!`). Elsewhere, a token that is a subject code is made unmatchable too,
so a collaborator who learned real codes (from a sample tube's label, say) cannot use the API
to link them to its pseudonyms, nor two collaborators their data through them. Any other token
passes unchanged; another client's pseudonym is one of those, and matches nothing.
"""

from __future__ import annotations

import re
from functools import cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from gateway.access.pseudonymise import rules
from gateway.access.pseudonyms import Pseudonyms
from gateway.fhir.errors import FhirError, Issue

RESULT_PARAMS = frozenset({"_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total",
                           "_format", "_pretty", "_since", "_type", "_outputFormat", "_page"})
"""Parameters whose values are never subject ids (searched as they are)."""
UNMATCHABLE = "!"
_SAID = re.compile(r"(?<![A-Za-z0-9\-.!])!?[A-Za-z0-9\-.]{1,64}(?![A-Za-z0-9\-.])")


@cache
def _tokens() -> re.Pattern[str]:
    """Id-shaped tokens; group 1 is `<subject type>/` when the token follows it."""
    return re.compile(rf"(?<![A-Za-z0-9\-.!])({rules().subject_type}/)?([A-Za-z0-9\-.]{{1,64}})(?![A-Za-z0-9\-.])")


def _bad_page() -> FhirError:
    return FhirError.of(400, "invalid", "The page token is malformed: follow the Bundle's links")


class Translator:
    """The identity: internal principals, and every principal while pseudonyms are off."""

    async def subject_id(self, type_: str, id_: str) -> str:
        """The store's id of `type_/id_` as the client wrote it."""
        return id_

    async def params(self, params: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Search (or export) parameters with the client's subject ids turned into the store's."""
        return params

    def public_id(self, type_: str, id_: str) -> str:
        """The id the client knows a stored resource by (Bundle fullUrl, Location)."""
        return id_

    def text(self, text: str) -> str:
        """Text the gateway wrote for this request, in the client's words."""
        return text

    def link(self, url: str) -> str:
        """A Bundle link repeating this request's parameters, in the client's words."""
        return url

    def issues(self, issues: list[Issue]) -> list[Issue]:
        return issues

    def error(self, error: FhirError) -> FhirError:
        return error


PLAIN = Translator()


class Pseudonymous(Translator):
    """An external principal with per-collaborator pseudonyms; remembers what it translated."""

    def __init__(self, pseudonyms: Pseudonyms, client_id: str) -> None:
        self.pseudonyms = pseudonyms
        self.client_id = client_id
        self.said: dict[str, str] = {}
        """What the store was asked -> what the client wrote."""

    async def subject_id(self, type_: str, id_: str) -> str:
        if type_ != rules().subject_type:
            return id_
        subject = (await self.pseudonyms.resolve(self.client_id, [id_]))[0].get(id_)
        return self._translated(id_, subject if subject is not None else UNMATCHABLE + id_)

    def _translated(self, written: str, asked: str) -> str:
        if asked != written:
            self.said[asked] = written
        return asked

    async def params(self, params: list[tuple[str, str]]) -> list[tuple[str, str]]:
        tokens = _tokens()
        after_type: set[str] = set()
        bare: set[str] = set()
        for key, value in params:
            if key.partition(":")[0] not in RESULT_PARAMS:
                for m in tokens.finditer(value):
                    (after_type if m.group(1) else bare).add(m.group(2))
        own, codes = await self.pseudonyms.resolve(self.client_id, after_type | bare, bare)

        def asked(m: re.Match[str]) -> str:
            token = m.group(2)
            if token in own:
                subject = own[token]
            elif m.group(1) or token in codes:
                subject = UNMATCHABLE + token
            else:
                return m.group(0)
            return (m.group(1) or "") + self._translated(token, subject)

        return [(key, self._page(value) if key == "_page"
                 else value if key.partition(":")[0] in RESULT_PARAMS else tokens.sub(asked, value))
                for key, value in params]

    def _page(self, token: str) -> str:
        opened = self.pseudonyms.unseal(self.client_id, token)
        if opened is None:
            raise _bad_page()
        return opened

    def public_id(self, type_: str, id_: str) -> str:
        return self.pseudonyms.of(self.client_id, id_) if type_ == rules().subject_type else id_

    def text(self, text: str) -> str:
        if not self.said:
            return text
        return _SAID.sub(lambda m: self.said.get(m.group(0), m.group(0)), text)

    def link(self, url: str) -> str:
        if not self.said and "_page=" not in url:
            return url
        parts = urlsplit(url)
        pairs = [(k, self.pseudonyms.seal(self.client_id, v) if k == "_page" else self.text(v))
                 for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        return urlunsplit(parts._replace(query=urlencode(pairs)))

    def issues(self, issues: list[Issue]) -> list[Issue]:
        return [Issue(i.severity, i.code, self.text(i.diagnostics), i.expression) for i in issues]

    def error(self, error: FhirError) -> FhirError:
        return FhirError(error.status, self.issues(error.issues), error.headers)
