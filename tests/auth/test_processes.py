"""Real gateway processes on 127.0.0.1: the SMART backend-services flow as a hospital integration
engineer writes it (plain httpx + pyjwt), jti replay refused across two processes sharing Redis,
and replay protection failing closed when Redis is configured but down."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.conftest import free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]
CLI = "import typer, gateway.cli_auth as auth; app = typer.Typer(); auth.register(app); app()"


def _env(tmp_path: Path, base_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(GATEWAY_DATABASE_URL=f"sqlite:///{tmp_path}/gateway.db", GATEWAY_DATA_DIR=str(tmp_path / "data"),
               GATEWAY_BASE_URL=base_url, **extra)
    return env


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-c", CLI, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


class Server:
    def __init__(self, env: dict[str, str], port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "gateway.asgi:app", "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning"], env=env, cwd=ROOT)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


async def start(servers: list[Server], env: dict[str, str], port: int) -> Server:
    server = Server(env, port)
    servers.append(server)
    await wait_http(f"{server.url}/healthz")
    return server


def register_backend(env: dict[str, str], tmp_path: Path) -> tuple[str, rsa.RSAPrivateKey, str]:
    """What the integration engineer does once: make a key pair, hand the JWKS to the biobank operator."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = uuid.uuid4().hex
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": kid, "alg": "RS384", "use": "sig"}
    (tmp_path / "ehr.jwks.json").write_text(json.dumps({"keys": [jwk]}))
    out = cli(env, "clients", "add", "--name", "Hospital EHR", "--kind", "backend", "--audience", "internal",
              "--scopes", "system/*.rs", "--jwks", str(tmp_path / "ehr.jwks.json"))
    return json.loads(out)["client_id"], key, kid


def signed_assertion(client_id: str, key: rsa.RSAPrivateKey, kid: str, token_url: str) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 300, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, key, algorithm="RS384", headers={"kid": kid, "typ": "JWT"})


def token_form(assertion: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "scope": "system/Specimen.rs system/Patient.rs",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion}


async def test_backend_services_flow_end_to_end_with_plain_httpx_and_pyjwt(tmp_path: Path,
                                                                          servers: list[Server]) -> None:
    port = free_port()
    env = _env(tmp_path, f"http://127.0.0.1:{port}/fhir")
    client_id, key, kid = register_backend(env, tmp_path)
    server = await start(servers, env, port)
    async with httpx.AsyncClient(base_url=server.url) as http:
        config = (await http.get("/fhir/.well-known/smart-configuration")).json()
        assert "RS384" in config["token_endpoint_auth_signing_alg_values_supported"]
        token_url = config["token_endpoint"]
        r = await http.post(token_url, data=token_form(signed_assertion(client_id, key, kid, token_url)))
        assert r.status_code == 200, r.text
        token = r.json()
        assert token["token_type"] == "Bearer" and token["scope"] == "system/Specimen.rs system/Patient.rs"
        headers = {"Authorization": f"Bearer {token['access_token']}", "Accept": "application/fhir+json"}
        created = await http.post("/fhir/Patient", headers=headers | {"Content-Type": "application/fhir+json"},
                                  json={"resourceType": "Patient"})
        assert created.status_code == 403, "a read-only token does not write"
        r = await http.get("/fhir/Specimen/none", headers=headers)
        assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
        assert (await http.get("/fhir/Consent/none", headers=headers)).status_code == 403
        assert (await http.get("/fhir/Specimen/none")).status_code == 401


async def _two_processes(tmp_path: Path, servers: list[Server], redis_url: str, redis_prefix: str
                         ) -> tuple[Server, Server, tuple[str, Any, str], str]:
    """Two gateway processes on one store and one Redis, a backend client, and the first one's token URL."""
    first_port, second_port = free_port(), free_port()
    env = _env(tmp_path, f"http://127.0.0.1:{first_port}/fhir", GATEWAY_REDIS_URL=redis_url,
               GATEWAY_REDIS_PREFIX=redis_prefix)
    client_id, key, kid = register_backend(env, tmp_path)
    first = await start(servers, env, first_port)
    second = await start(servers, env, second_port)
    token_url = f"http://127.0.0.1:{first_port}/auth/token"
    return first, second, (client_id, key, kid), token_url


async def test_two_processes_sharing_redis_refuse_an_assertion_replayed_across_them(
        tmp_path: Path, servers: list[Server], redis_url: str, redis_prefix: str) -> None:
    first, second, (client_id, key, kid), token_url = await _two_processes(tmp_path, servers, redis_url,
                                                                           redis_prefix)
    signed = signed_assertion(client_id, key, kid, token_url)
    async with httpx.AsyncClient() as http:
        ok = await http.post(f"{first.url}/auth/token", data=token_form(signed))
        assert ok.status_code == 200, ok.text
        replay = await http.post(f"{second.url}/auth/token", data=token_form(signed))
        assert replay.status_code == 401 and "jti" in replay.json()["error_description"]
        headers = {"Authorization": f"Bearer {ok.json()['access_token']}"}
        assert (await http.get(f"{second.url}/fhir/Specimen/x", headers=headers)).status_code == 404
        fresh = await http.post(f"{second.url}/auth/token",
                                data=token_form(signed_assertion(client_id, key, kid, token_url)))
        assert fresh.status_code == 200


async def test_revocation_on_one_process_is_enforced_by_the_other(
        tmp_path: Path, servers: list[Server], redis_url: str, redis_prefix: str) -> None:
    first, second, (client_id, key, kid), token_url = await _two_processes(tmp_path, servers, redis_url,
                                                                           redis_prefix)
    async with httpx.AsyncClient() as http:
        token = (await http.post(token_url, data=token_form(signed_assertion(client_id, key, kid, token_url)))
                 ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert (await http.get(f"{second.url}/fhir/Specimen/x", headers=headers)).status_code == 404  # cached there
        revoke = {k: v for k, v in token_form(signed_assertion(client_id, key, kid, token_url)).items()
                  if k.startswith("client_assertion")}
        assert (await http.post(f"{first.url}/auth/revoke", data={"token": token, **revoke})).status_code == 200
        for _ in range(50):
            if (await http.get(f"{second.url}/fhir/Specimen/x", headers=headers)).status_code == 401:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the other process still accepts the revoked token")


async def test_redis_down_refuses_assertions_but_issued_tokens_keep_working(tmp_path: Path,
                                                                              servers: list[Server]) -> None:
    port = free_port()
    env = _env(tmp_path, f"http://127.0.0.1:{port}/fhir", GATEWAY_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    client_id, key, kid = register_backend(env, tmp_path)
    issued = cli(env, "token", "--client", client_id, "--scopes", "system/Specimen.rs")
    server = await start(servers, env, port)
    token_url = f"http://127.0.0.1:{port}/auth/token"
    async with httpx.AsyncClient() as http:
        r = await http.post(token_url, data=token_form(signed_assertion(client_id, key, kid, token_url)))
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "temporarily_unavailable" and "Redis" in r.json()["error_description"]
        assert r.json()["resourceType"] == "OperationOutcome" and "retry-after" in r.headers
        headers = {"Authorization": f"Bearer {issued}"}
        assert (await http.get(f"{server.url}/fhir/Specimen/x", headers=headers)).status_code == 404
        assert (await http.get(f"{server.url}/fhir/Consent/x", headers=headers)).status_code == 403
