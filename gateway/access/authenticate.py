"""Turning a request into a Principal."""

from __future__ import annotations

from starlette.requests import Request

from gateway.access.principal import DEV_PRINCIPAL, Principal
from gateway.fhir.errors import FhirError
from gateway.settings import Settings


def unauthorized(description: str) -> FhirError:
    """401 per RFC 6750, with the OperationOutcome body the gateway always sends."""
    return FhirError.of(401, "login", description,
                        headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{description}"'})


def make_authenticator(settings: Settings):
    async def dev(_: Request) -> Principal:
        return DEV_PRINCIPAL

    async def refuse(_: Request) -> Principal:
        raise unauthorized("no authorization server is configured yet")

    return dev if settings.auth_disabled else refuse
