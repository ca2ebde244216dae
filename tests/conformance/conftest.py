"""A real gateway process on a free port, with a registered backend-services client, for the
conformance run, schemathesis and the report screenshot (started once for the package)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.conformance.auth import thumbprint
from tests.conformance import liar
from tests.conftest import free_port, wait_http

CLI = [str(Path(sys.executable).parent / "biobank-gateway")]


@dataclass(frozen=True)
class RunningGateway:
    base: str
    client_id: str
    key: Path
    env: dict[str, str]

    def token(self, scopes: str = "system/*.*") -> str:
        out = subprocess.run([*CLI, "token", "--client", self.client_id, "--scopes", scopes], env=self.env,
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()


def _key_pair(directory: Path) -> tuple[Path, Path]:
    """A client's RS384 key and the JWKS registered for it (kid = RFC 7638 thumbprint)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = directory / "client-key.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwks = directory / "client-jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": thumbprint(jwk), "alg": "RS384", "use": "sig"}]}))
    return pem, jwks


@pytest.fixture(scope="session")
def running_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    directory = tmp_path_factory.mktemp("conformance-gateway")
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"GATEWAY_DATABASE_URL": f"sqlite:///{directory}/gateway.db", "GATEWAY_BASE_URL": base,
            "GATEWAY_DATA_DIR": str(directory / "data")}
    pem, jwks = _key_pair(directory)
    added = subprocess.run([*CLI, "clients", "add", "--name", "conformance-run", "--kind", "backend", "--audience",
                            "internal", "--scopes", "system/*.*", "--jwks", str(jwks)],
                           env=env, check=True, capture_output=True, text=True, cwd=directory)
    client_id = json.loads(added.stdout)["client_id"]
    log = (directory / "gateway.log").open("wb")
    process = subprocess.Popen([*CLI, "serve", "--host", "127.0.0.1", "--port", str(port)], env=env, cwd=directory,
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        asyncio.run(wait_http(f"{base}/metadata", timeout=60))
        yield RunningGateway(base, client_id, pem, env)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="session")
def liar_base() -> Iterator[str]:
    """The lying fixture server (tests/conformance/liar.py) on a free port, in a thread."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(liar.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the fixture server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/fhir"
    server.should_exit = True
    thread.join(timeout=10)
