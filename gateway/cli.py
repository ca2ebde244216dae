"""The `biobank-gateway` command (INTERFACES.md, "Command line")."""

from __future__ import annotations

import ipaddress

import typer
import uvicorn

from gateway.settings import Settings

cli = typer.Typer(help="Biobank FHIR Gateway", no_args_is_help=True, add_completion=False)


@cli.callback()
def _root() -> None:
    """Biobank FHIR Gateway: serve, load, validate, manage SMART clients. Settings come from GATEWAY_*."""


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@cli.command()
def serve(host: str = "127.0.0.1", port: int = 8080, workers: int = 1) -> None:
    """Run the HTTP service."""
    settings = Settings()
    if settings.auth_disabled and not _loopback(host):
        raise typer.BadParameter("GATEWAY_AUTH_DISABLED is for development on a loopback address only")
    uvicorn.run("gateway.asgi:app", host=host, port=port, workers=workers, log_level="warning",
                proxy_headers=False, factory=False)


def main() -> None:
    cli()
