"""`biobank-gateway clients|users|token`: managing the built-in authorization server.

Wired into the main command with `register(cli)`. Works on the store the settings name
(the same one the server uses), so a client added here can get tokens at once; revocations
made here (`clients disable`) reach running servers through the shared cache.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import httpx
import typer

from gateway.access.pseudonyms import Pseudonyms, pseudonym_secret
from gateway.authserver.registry import RegistrationError
from gateway.authserver.server import AuthServer, grantable
from gateway.cache import open_cache
from gateway.runtime import open_store
from gateway.settings import Settings

T = TypeVar("T")

clients_app = typer.Typer(help="SMART clients of the built-in authorization server", no_args_is_help=True)
users_app = typer.Typer(help="People who can sign in at the authorization page", no_args_is_help=True)


@asynccontextmanager
async def _auth_server() -> AsyncIterator[AuthServer]:
    settings = Settings()
    store = await open_store(settings)
    cache = open_cache(settings.redis_url, settings.redis_prefix)
    try:
        async with httpx.AsyncClient() as http:
            secret = pseudonym_secret(settings)
            yield AuthServer(settings, store.db, cache, http, Pseudonyms(secret, store.db) if secret else None)
    finally:
        await cache.close()
        await store.close()


def _run(action: Callable[[AuthServer], Awaitable[T]]) -> T:
    async def main() -> T:
        async with _auth_server() as server:
            return await action(server)

    try:
        return asyncio.run(main())
    except RegistrationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@clients_app.command("add")
def clients_add(
    name: str = typer.Option(..., help="shown on the authorization page"),
    kind: str = typer.Option(..., help="backend | public | confidential"),
    scopes: str = typer.Option(..., help='the most any token gets, e.g. "system/*.rs" or '
                               '"launch/patient offline_access patient/*.rs"'),
    audience: str = typer.Option("external", help="internal (hospital systems) | external (collaborators)"),
    jwks: Path | None = typer.Option(None, help="JWKS file with the client's public keys"),
    jwks_url: str | None = typer.Option(None, help="URL of the client's JWKS"),
    redirect_uri: list[str] = typer.Option([], help="app redirect URI (repeat for several)"),
    commercial: bool = typer.Option(False, help="the client is a commercial party (consent rules)"),
) -> None:
    """Register a client; prints {"client_id", "client_secret"?} as JSON."""
    keys = json.loads(jwks.read_text()) if jwks else None

    async def add(server: AuthServer) -> None:
        client, secret = await server.registry.add_client(
            name=name, kind=kind, audience=audience, scopes=scopes, jwks=keys, jwks_uri=jwks_url,
            redirect_uris=tuple(redirect_uri), commercial=commercial)
        out = {"client_id": client.client_id, **({"client_secret": secret} if secret else {})}
        typer.echo(json.dumps(out))

    _run(add)


@clients_app.command("list")
def clients_list() -> None:
    """All registered clients as JSON lines (no secrets)."""

    async def show(server: AuthServer) -> None:
        for client in await server.registry.clients():
            typer.echo(json.dumps(client.summary()))

    _run(show)


@clients_app.command("disable")
def clients_disable(client_id: str) -> None:
    """Disable a client and revoke every token it holds, on every running instance."""

    async def disable(server: AuthServer) -> None:
        if not await server.registry.disable_client(client_id):
            raise RegistrationError(f"no client {client_id}")
        await server.revoke(f"client:{client_id}")
        typer.echo(f"disabled {client_id}")

    _run(disable)


@users_app.command("add")
def users_add(
    username: str = typer.Option(...),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="read the password from stdin"),
    role: str = typer.Option("researcher", help="staff | researcher"),
) -> None:
    """Add a person who can sign in at /auth/authorize (the password is read from stdin, never argv)."""
    if not password_stdin:
        raise typer.BadParameter("give the password on stdin with --password-stdin")
    password = sys.stdin.readline().rstrip("\r\n")

    async def add(server: AuthServer) -> None:
        await server.registry.add_user(username, password, role)
        typer.echo(f"added {username} ({role})")

    _run(add)


def token(
    client: str = typer.Option(..., help="client_id"),
    scopes: str = typer.Option(..., help="requested scopes (granted: those the client is registered for)"),
    patient: str | None = typer.Option(None, help="launch patient (Patient id) for patient/ scopes"),
    lifetime: int | None = typer.Option(None, help="seconds (default GATEWAY_TOKEN_LIFETIME)"),
) -> None:
    """Mint an access token locally for an operator (dev and tests); prints the token alone."""

    async def mint(server: AuthServer) -> str:
        found = await server.registry.client(client)
        if found is None or found.disabled:
            raise RegistrationError(f"no enabled client {client}")
        flow = "backend" if found.kind == "backend" else "app"
        granted = grantable(scopes, found, flow)
        if not granted:
            raise RegistrationError(f"none of {scopes!r} is registered for this client ({found.scopes})")
        if dropped := set(scopes.split()) - set(granted):
            typer.echo(f"not granted: {' '.join(sorted(dropped))}", err=True)
        shown = await server.patient_shown(found, patient)
        return server.mint(found, " ".join(granted), patient=shown, lifetime=lifetime)[0]

    typer.echo(_run(mint))


def register(cli: typer.Typer) -> None:
    """Add `clients`, `users` and `token` to the `biobank-gateway` command."""
    cli.add_typer(clients_app, name="clients")
    cli.add_typer(users_app, name="users")
    cli.command("token")(token)
