"""Pure-ASGI middleware that records one AuditEvent per FHIR data access.

The response writers note which resources they released (`Ctx.released`); this middleware
adds the status the client got and hands the whole to the audit log after the response is
sent. Discovery and the CapabilityStatement are not data access and are not recorded.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.access.audit import Access

NOT_AUDITED = ("/fhir/metadata", "/fhir/.well-known/")


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/fhir") or path.startswith(NOT_AUDITED):
            await self.app(scope, receive, send)
            return
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            state = scope.get("state") or {}
            audit = getattr(scope.get("app").state, "audit", None) if scope.get("app") else None
            ctx = state.get("fhir")
            if audit is not None:
                route = scope.get("route")
                access = Access(
                    client_id=ctx.principal.client_id if ctx else "anonymous",
                    audience=ctx.principal.audience if ctx else "unknown",
                    interaction=getattr(route, "name", None) or "unknown",
                    method=scope.get("method", ""), path=path,
                    query=scope.get("query_string", b"").decode("latin-1"),
                    status=status or 500, released=list(ctx.released) if ctx else [],
                    address=(scope.get("client") or (None,))[0],
                )
                audit.record(access)
