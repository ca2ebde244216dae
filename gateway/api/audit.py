"""Pure-ASGI middleware that records one AuditEvent per FHIR data access.

The response writers note which resources they released (`Ctx.released`); this middleware
adds the status the client got and hands the whole to the audit log after the response is
sent. Discovery and the CapabilityStatement are not data access and are not recorded.

Before a request that can return AuditEvents it has the audit log catch up, so an auditor
sees every access recorded until then (the log turns accesses into AuditEvents lazily).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.access.audit import Access, AuditLog

NOT_AUDITED = ("/fhir/metadata", "/fhir/.well-known/")
SYSTEM_LEVEL = frozenset(("/fhir", "/fhir/_search", "/fhir/_history"))
"""Paths whose answer may hold any type: system search, batch/transaction, system history."""


def reaches_audit_events(scope: Scope) -> bool:
    """Whether the answer to this request may contain AuditEvents — conservatively: a type named
    in the path or query (`_type`, `_include`, `_revinclude`), any wildcard, system-level paths,
    a POSTed `_search` (its parameters are in the body) and bulk export."""
    path: str = scope.get("path", "")
    query: bytes = scope.get("query_string", b"")
    return ("AuditEvent" in path or b"AuditEvent" in query or "*" in path or b"*" in query
            or b"%2A" in query.upper() or path.rstrip("/") in SYSTEM_LEVEL or "$export" in path
            or (path.endswith("/_search") and scope.get("method") == "POST"))


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        audit: AuditLog | None = getattr(scope["app"].state, "audit", None) if "app" in scope else None
        if scope["type"] != "http" or audit is None or not path.startswith("/fhir") or path.startswith(NOT_AUDITED):
            await self.app(scope, receive, send)
            return
        if reaches_audit_events(scope):
            await audit.catch_up()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            ctx = (scope.get("state") or {}).get("fhir")
            audit.record(Access(
                client_id=ctx.principal.client_id if ctx else "anonymous",
                audience=ctx.principal.audience if ctx else "unknown",
                interaction=getattr(scope.get("route"), "name", None) or "unknown",
                method=scope.get("method", ""), path=path,
                query=scope.get("query_string", b"").decode("latin-1"),
                status=status or 500, released=ctx.released if ctx else [],
                address=(scope.get("client") or (None,))[0],
            ))
