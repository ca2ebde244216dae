"""HTTP of the authorization server: `/auth/*` and `/fhir/.well-known/smart-configuration`.

Thin: parse the form, call the flow, encode. The token endpoint is rate-limited per client
(token bucket in the shared cache: `GATEWAY_RATE_LIMIT` per second when set, else
`TOKEN_RATE`), so a leaked client id cannot be used to grind secrets or flood the signer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import orjson
from fastapi import APIRouter
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from gateway.access.tokens import InvalidToken
from gateway.authserver import pages
from gateway.authserver.authorize import Authorization, AuthorizeError, AuthRequest
from gateway.authserver.clientauth import claimed_client_id
from gateway.authserver.discovery import smart_configuration
from gateway.authserver.oauth import OAuthError, error_response, json_response
from gateway.authserver.server import AuthServer
from gateway.authserver.token import TokenEndpoint
from gateway.fhir.errors import FhirError
from gateway.store.database import Database

TOKEN_RATE = 10.0
"""Token requests per second per client when GATEWAY_RATE_LIMIT is 0 (burst: twice that)."""

SIGN_IN_RATE = 1 / 12
"""Sign-in attempts per second per user name (burst 5): slows password guessing to 5 a minute."""

router = APIRouter()


@dataclass(frozen=True)
class AuthService:
    """What the routes need, built once per process in the app's lifespan (`app.state.auth`)."""

    server: AuthServer
    authorization: Authorization
    token: TokenEndpoint

    @classmethod
    def build(cls, server: AuthServer, db: Database) -> AuthService:
        return cls(server, Authorization(server, db), TokenEndpoint(server))


def _service(request: Request) -> AuthService:
    return request.app.state.auth


def _fields(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str)}


@router.get("/fhir/.well-known/smart-configuration", name="smart-configuration")
async def smart_config(request: Request) -> Response:
    body = orjson.dumps(smart_configuration(_service(request).server.endpoints))
    return Response(body, media_type="application/json", headers={"Cache-Control": "public, max-age=3600"})


@router.get("/auth/jwks", name="auth-jwks")
async def jwks(request: Request) -> Response:
    return Response(orjson.dumps(_service(request).server.keys.jwks()), media_type="application/json",
                    headers={"Cache-Control": "public, max-age=300"})


def _authorize_failure(exc: AuthorizeError) -> Response:
    if exc.redirect:
        return RedirectResponse(exc.redirect, status_code=302)
    return pages.failure(str(exc))


@router.get("/auth/authorize", name="auth-authorize")
async def authorize(request: Request) -> Response:
    auth = _service(request).authorization
    try:
        pending, client = await auth.check(request.query_params)
    except AuthorizeError as exc:
        return _authorize_failure(exc)
    return pages.sign_in(auth.server.endpoints.authorize, auth.seal(pending), client.name)


@router.post("/auth/authorize", name="auth-authorize-post")
async def authorize_post(request: Request) -> Response:
    auth = _service(request).authorization
    form = await request.form()
    action = auth.server.endpoints.authorize
    try:
        pending, username = await auth.unseal(str(form.get("auth_request", "")))
        offered, client = await auth.offered(pending)
    except AuthorizeError as exc:
        return _authorize_failure(exc)
    if username is None:
        user, password = str(form.get("username", "")), str(form.get("password", ""))
        if await auth.server.cache.resilient().take(f"ratelimit:signin:{user}", SIGN_IN_RATE, 5) > 0:
            return pages.sign_in(action, auth.seal(pending), client.name, "Too many attempts; wait a minute.")
        if await auth.server.registry.check_user(user, password) is None:
            return pages.sign_in(action, auth.seal(pending), client.name, "Wrong user name or password.")
        username = user
    decision = form.get("decision")
    if decision == "deny":
        return RedirectResponse(auth.deny(pending), status_code=302)
    if decision == "approve":
        chosen = [str(s) for s in form.getlist("scope")]
        try:
            location = await auth.approve(pending, username, chosen, str(form.get("patient") or "") or None)
        except AuthorizeError as exc:
            return await _consent(auth, pending, username, client.name, offered, str(exc))
        return RedirectResponse(location, status_code=302)
    return await _consent(auth, pending, username, client.name, offered)


async def _consent(auth: Authorization, pending: AuthRequest, username: str, client_name: str, offered: list[str],
                   error: str | None = None) -> Response:
    subjects = await auth.subjects() if auth.needs_subject(pending, offered) else None
    return pages.consent(auth.server.endpoints.authorize, auth.seal(pending, username), client_name, offered,
                         subjects, error)


async def _rate_limited(request: Request, form: Mapping[str, str]) -> None:
    server = _service(request).server
    who = claimed_client_id(form, request.headers.get("authorization"))
    who = who or (request.client.host if request.client else "unknown")
    rate = server.settings.rate_limit or TOKEN_RATE
    wait = await server.cache.resilient().take(f"ratelimit:token:{who}", rate, 2 * rate)
    if wait > 0:
        raise OAuthError("slow_down", "too many token requests for this client; retry later", 429,
                         {"Retry-After": str(max(1, round(wait)))})


@router.post("/auth/token", name="auth-token")
async def token(request: Request) -> Response:
    form = _fields(await request.form())
    try:
        await _rate_limited(request, form)
        body = await _service(request).token.handle(form, request.headers.get("authorization"))
    except OAuthError as exc:
        return error_response(exc)
    return json_response(body)


async def _caller_may_introspect(request: Request, form: Mapping[str, str]) -> None:
    """RFC 7662 section 2.1: the caller authenticates as a client, or with an active token of this server."""
    service = _service(request)
    header = request.headers.get("authorization") or ""
    if header.lower().startswith("bearer "):
        try:
            await service.server.tokens.principal(header[7:].strip())
        except InvalidToken as exc:
            raise OAuthError("invalid_client", f"the Bearer token is not valid: {exc}", 401) from exc
        return
    client = await service.server.clients.authenticate(form, header or None)
    if client.kind == "public":
        raise OAuthError("invalid_client", "public clients cannot introspect tokens (they cannot authenticate)", 401)


@router.post("/auth/introspect", name="auth-introspect")
async def introspect(request: Request) -> Response:
    form = _fields(await request.form())
    try:
        await _caller_may_introspect(request, form)
        if not form.get("token"):
            raise OAuthError("invalid_request", "token is required")
        body = await _service(request).token.introspect(form["token"])
    except OAuthError as exc:
        return error_response(exc)
    return json_response(body)


@router.post("/auth/revoke", name="auth-revoke")
async def revoke(request: Request) -> Response:
    form = _fields(await request.form())
    service = _service(request)
    try:
        client = await service.server.clients.authenticate(form, request.headers.get("authorization"))
        if not form.get("token"):
            raise OAuthError("invalid_request", "token is required")
        await service.token.revoke(client, form["token"])
    except OAuthError as exc:
        return error_response(exc)
    return json_response({})


@router.post("/auth/launch", name="auth-launch")
async def launch(request: Request) -> Response:
    """EHR launch: an internal system (the EHR integration) registers the patient context of a
    launch and passes the returned `launch` id to the app, which sends it to /auth/authorize."""
    principal = await request.app.state.services.authenticate(request)
    if not principal.internal:
        raise FhirError.of(403, "forbidden", "only internal (hospital) clients may create launch contexts")
    form = _fields(await request.form())
    patient = form.get("patient", "")
    if not await _service(request).authorization.patient_exists(patient):
        raise FhirError.of(400, "invalid", f"patient {patient!r} is not a research subject of this biobank")
    return json_response({"launch": await _service(request).server.grants.new_launch(patient)})
