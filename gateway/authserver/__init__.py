"""The built-in SMART authorization server: backend services (client_credentials with a JWT
assertion), app launch (authorization code + PKCE, standalone and EHR), refresh tokens,
introspection, revocation and discovery. Mounted by `gateway.app` under `/auth`."""

from gateway.authserver.routes import AuthService, router
from gateway.authserver.server import AuthServer

__all__ = ["AuthServer", "AuthService", "router"]
