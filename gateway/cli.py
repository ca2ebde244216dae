"""The `biobank-gateway` command (INTERFACES.md, "Command line").

Every command reads the same settings as the server (GATEWAY_*, `.env`), so in a checkout
the CLI works on the same store as `make run`'s server.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys
from datetime import datetime
from pathlib import Path

import orjson
import typer
import uvicorn

from gateway import cli_auth
from gateway.conformance.cli import app as conformance_app
from gateway.settings import Settings

cli = typer.Typer(help="Biobank FHIR Gateway", no_args_is_help=True, add_completion=False)
cli_auth.register(cli)
cli.add_typer(conformance_app, name="conformance")

DEMO_SUBJECTS = 2000
DEMO_SEED = 42


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
    from gateway.observability.metrics import prepare_multiprocess

    prepare_multiprocess(workers)
    uvicorn.run("gateway.asgi:app", host=host, port=port, workers=workers, log_level="warning",
                proxy_headers=False, timeout_graceful_shutdown=30)


@cli.command("demo-data")
def demo_data(out: Path = typer.Option(..., help="folder for the CSV export"),
              subjects: int = typer.Option(DEMO_SUBJECTS, help="number of subjects"),
              seed: int = typer.Option(DEMO_SEED, help="same seed, same files")) -> None:
    """Write a synthetic, realistic, messy source export (source-export.md)."""
    from gateway.ingest.demo import write_demo_export

    summary = write_demo_export(out, subjects, seed)
    typer.echo(orjson.dumps(summary, option=orjson.OPT_INDENT_2, default=str).decode())


async def _load(settings: Settings, source: str, since: datetime | None, report: Path | None, quiet: bool,
                workers: int | None = None) -> int:
    from gateway.ingest.loader import load as run_load
    from gateway.runtime import open_store

    store = await open_store(settings)
    try:
        result = await run_load(store, source, since, report, progress=not quiet, workers=workers)
    finally:
        await store.close()
    if not quiet:
        result.print()
    return 0


@cli.command()
def load(source: str = typer.Option(..., help="folder, CSV/NDJSON file, or SQL URL"),
         since: datetime | None = typer.Option(None, help="only rows updated after this timestamp"),
         report: Path | None = typer.Option(None, help="write the load report (JSON) here"),
         workers: int | None = typer.Option(None, help="processes that map and validate rows "
                                                       "(default: one per CPU; 0 or 1: in this process)")) -> None:
    """Map, validate and store a source export; print the load report."""
    raise typer.Exit(asyncio.run(_load(Settings(), source, since, report, quiet=False, workers=workers)))


async def _store_is_empty(settings: Settings) -> bool:
    from gateway.runtime import open_store

    store = await open_store(settings)
    try:
        row = await store.db.fetchone("SELECT COUNT(*) FROM resources WHERE type = 'Specimen'")
    finally:
        await store.close()
    return not row or row[0] == 0


@cli.command()
def demo(if_empty: bool = typer.Option(False, "--if-empty", help="do nothing when the store holds specimens"),
         subjects: int = DEMO_SUBJECTS, seed: int = DEMO_SEED) -> None:
    """Generate and load the synthetic demo biobank (what `make run` does on a fresh clone)."""
    from gateway.ingest.demo import write_demo_export

    settings = Settings()
    if if_empty and not asyncio.run(_store_is_empty(settings)):
        typer.echo("demo biobank already loaded")
        return
    folder = settings.data_dir / "demo-export"
    write_demo_export(folder, subjects, seed)
    typer.echo(f"loading the demo biobank ({subjects} subjects) from {folder} ...")
    asyncio.run(_load(settings, str(folder), None, settings.data_dir / "demo-load-report.json", quiet=False))


@cli.command()
def validate(files: list[Path] = typer.Argument(..., help="FHIR JSON, Bundle or NDJSON files")) -> None:
    """Validate resources against base R4 and the biobank profiles; exit 1 when any has an error."""
    from gateway.profiles import ProfileValidator
    from gateway.profiles.cli import validate_files

    errors, reports = validate_files(files, ProfileValidator.load(Settings().profiles_dir))
    for report in reports:
        sys.stdout.write(orjson.dumps(report).decode() + "\n")
    typer.echo(f"{len(reports)} resources, {errors} with errors", err=True)
    raise typer.Exit(1 if errors else 0)


async def _reindex(settings: Settings, types: list[str] | None) -> int:
    from gateway.runtime import open_store
    from gateway.search.reindex import reindex as run_reindex

    store = await open_store(settings)
    try:
        return await run_reindex(store, types or None)
    finally:
        await store.close()


@cli.command()
def reindex(types: list[str] = typer.Option([], "--type", help="only these resource types (repeatable)")) -> None:
    """Rebuild the search indexes (after a SearchParameter was added to profiles/)."""
    count = asyncio.run(_reindex(Settings(), types))
    typer.echo(f"reindexed {count} resources")


def main() -> None:
    cli()
