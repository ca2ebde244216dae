"""`clients add|list|disable`, `users add --password-stdin` and `token`, as an operator runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from gateway import cli_auth
from tests.auth.conftest import KeyPair


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GATEWAY_DATABASE_URL", f"sqlite:///{tmp_path}/gateway.db")
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GATEWAY_BASE_URL", "http://127.0.0.1:8080/fhir")
    monkeypatch.delenv("GATEWAY_REDIS_URL", raising=False)
    app = typer.Typer()
    cli_auth.register(app)
    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None):
        return runner.invoke(app, list(args), input=stdin)

    return invoke


def test_clients_add_list_disable_and_token(run, tmp_path: Path) -> None:
    jwks = tmp_path / "keys.json"
    jwks.write_text(json.dumps(KeyPair.rsa().jwks()))
    added = run("clients", "add", "--name", "EHR", "--kind", "backend", "--audience", "internal",
                "--scopes", "system/*.rs", "--jwks", str(jwks))
    assert added.exit_code == 0, added.output
    client_id = json.loads(added.stdout)["client_id"]
    app = run("clients", "add", "--name", "App", "--kind", "confidential", "--scopes", "patient/*.rs",
              "--redirect-uri", "https://app.example.org/cb")
    assert json.loads(app.stdout)["client_secret"]
    listed = [json.loads(line) for line in run("clients", "list").stdout.splitlines()]
    assert {c["name"] for c in listed} == {"EHR", "App"} and all("secret" not in c for c in listed)
    token = run("token", "--client", client_id, "--scopes", "system/Specimen.rs")
    assert token.exit_code == 0 and token.stdout.count(".") == 2 and len(token.stdout.splitlines()) == 1
    assert run("clients", "disable", client_id).exit_code == 0
    assert run("token", "--client", client_id, "--scopes", "system/Specimen.rs").exit_code == 2


def test_backend_client_without_keys_is_refused(run) -> None:
    r = run("clients", "add", "--name", "EHR", "--kind", "backend", "--scopes", "system/*.rs")
    assert r.exit_code == 2 and "--jwks" in r.output


def test_users_add_reads_the_password_from_stdin(run) -> None:
    assert run("users", "add", "--username", "bob", "--password-stdin", "--role", "staff",
               stdin="long enough secret\n").exit_code == 0
    assert run("users", "add", "--username", "bob", "--password-stdin", stdin="another secret\n").exit_code == 2
    assert run("users", "add", "--username", "eve").exit_code != 0
