"""`biobank-gateway conformance run`: the one-command check of any FHIR R4 base (ours or a partner's).

Wiring (gateway/cli.py): `cli.add_typer(gateway.conformance.cli.app, name="conformance")`.
Exit code 0 when nothing failed, 1 when a check failed, 2 when the run could not start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import httpx
import typer

from gateway.conformance import htmlreport, junit
from gateway.conformance.auth import AuthError, BackendClient, backend_token
from gateway.conformance.loader import DEFINITIONS_DIR, SUITES, SuiteError, load_suites
from gateway.conformance.model import CaseResult, Check
from gateway.conformance.needs import RunOptions
from gateway.conformance.runner import Runner
from gateway.conformance.target import Target

app = typer.Typer(help="Conformance runs against any FHIR R4 base (suites under conformance/)", no_args_is_help=True,
                  add_completion=False)


@app.callback()
def _group() -> None:
    """Conformance runs against any FHIR R4 base (suites under conformance/)."""


def _progress(case: CaseResult) -> None:
    outcome = case.outcome.upper()
    line = f"{outcome:<4} {case.suite}/{case.id} ({case.seconds * 1000:.0f} ms)"
    if case.outcome == "fail":
        first = case.failures[0]
        line += f" — {first.name}: {first.detail}"[:300]
    elif case.skip_reason:
        line += f" — {case.skip_reason}"[:200]
    typer.echo(line)


def _authenticate(http: httpx.Client, base: str, client_id: str, key: Path, scope: str | None,
                  allow_writes: bool) -> tuple[BackendClient | None, str | None, CaseResult]:
    """Backend services as a recorded case, so a refused token shows in the report like any check."""
    record = CaseResult("smart", "backend-services-token", f"get a token for {client_id} (backend services)")
    try:
        client = BackendClient(client_id, key)
        token = backend_token(http, base, client, scope, allow_writes)
    except (AuthError, OSError, ValueError) as exc:
        record.checks.append(Check("token endpoint grants a token", "fail", str(exc)))
        return None, None, record
    record.checks.append(Check("token endpoint grants a token", "pass"))
    return client, token, record


def run(base: str, token: str | None = None, client_id: str | None = None, key: Path | None = None,
        suites: list[str] | None = None, report_dir: Path | None = None, allow_writes: bool = False, *,
        scope: str | None = None, definitions: Path = DEFINITIONS_DIR, timeout: float = 30.0) -> int:
    """Run the suites against `base`; write JUnit and HTML into `report_dir`; the exit code."""
    if token and client_id:
        typer.echo("give either --token or --client-id/--key, not both", err=True)
        return 2
    if bool(client_id) != bool(key):
        typer.echo("--client-id and --key go together", err=True)
        return 2
    try:
        loaded = load_suites(suites, definitions)
    except SuiteError as exc:
        typer.echo(str(exc), err=True)
        return 2
    with httpx.Client(timeout=timeout, follow_redirects=False) as http:
        target = Target(base, http, token)
        client, setup = None, None
        if client_id and key:
            client, target.token, setup = _authenticate(http, target.base, client_id, key, scope, allow_writes)
        options = RunOptions(allow_writes=allow_writes, has_token=bool(target.token), has_client=client is not None)
        runner = Runner(target, options, client=client, progress=_progress, directory=definitions)
        typer.echo(f"conformance run against {target.base} ({'read-write' if allow_writes else 'read-only'}): "
                   f"{', '.join(s.name for s in loaded)}")
        if setup is not None:
            _progress(setup)
        result = runner.run(loaded)
        if setup is not None:
            result.cases.insert(0, setup)
    typer.echo(f"{result.count('pass')} passed, {result.count('fail')} failed, {result.count('skip')} skipped "
               f"in {result.seconds:.1f}s")
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        junit.write(result, report_dir / "conformance.junit.xml")
        htmlreport.write(result, report_dir / "conformance.html")
        typer.echo(f"reports: {report_dir / 'conformance.junit.xml'}, {report_dir / 'conformance.html'}")
    return 0 if result.ok else 1


@app.command("run")
def run_command(
    base: Annotated[str, typer.Option(help="FHIR base URL, e.g. http://127.0.0.1:8080/fhir")],
    token: Annotated[str | None, typer.Option(help="Bearer token to send")] = None,
    client_id: Annotated[str | None, typer.Option(help="SMART backend-services client id")] = None,
    key: Annotated[Path | None, typer.Option(help="PEM private key of --client-id (RS384 or ES384)")] = None,
    suite: Annotated[list[str] | None, typer.Option(help=f"suite to run (repeatable): {', '.join(SUITES)}")] = None,
    report: Annotated[Path | None, typer.Option(help="directory for conformance.junit.xml and .html")] = None,
    allow_writes: Annotated[bool, typer.Option(help="run the cases that create data")] = False,
    scope: Annotated[str | None, typer.Option(help="scopes to ask for with --client-id")] = None,
) -> None:
    """Check a FHIR R4 server against what its CapabilityStatement declares, SMART and Bulk Data."""
    raise typer.Exit(run(base, token, client_id, key, suite, report, allow_writes, scope=scope))
