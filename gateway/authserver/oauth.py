"""OAuth 2.0 error and token responses (RFC 6749 section 5), in the gateway's error shape.

OAuth clients read `error` / `error_description`; the gateway promises an OperationOutcome
for every error. One JSON body carries both: the OAuth members plus `resourceType` and
`issue` (RFC 6749 lets clients ignore members they do not know). Every answer of the token,
introspection and revocation endpoints has `Cache-Control: no-store` (RFC 6749 5.1).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from gateway.fhir.errors import Issue, operation_outcome

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}

_ISSUE_CODES = {"invalid_client": "login", "unauthorized_client": "forbidden", "access_denied": "forbidden",
                "invalid_scope": "forbidden", "slow_down": "throttled", "temporarily_unavailable": "transient"}


class OAuthError(Exception):
    """Ends a token/introspection/revocation request with an RFC 6749 error."""

    def __init__(self, error: str, description: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{error}: {description}")
        self.error, self.description, self.status = error, description, status
        self.headers = headers or {}


def json_response(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers={**NO_STORE, **(headers or {})})


def error_response(exc: OAuthError) -> Response:
    issue = Issue("error", _ISSUE_CODES.get(exc.error, "invalid"), f"{exc.error}: {exc.description}")
    body = {"error": exc.error, "error_description": exc.description, **operation_outcome([issue])}
    headers = dict(exc.headers)
    if exc.status == 401 and "WWW-Authenticate" not in headers:
        headers["WWW-Authenticate"] = 'Basic realm="biobank-gateway"'
    return json_response(body, exc.status, headers)
