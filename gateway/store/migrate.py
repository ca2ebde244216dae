"""Schema creation and migration on start, on both engines, without a second driver.

DDL is compiled by SQLAlchemy for the engine at hand and run on the store's own
connection. Every table and index is created `IF NOT EXISTS`, so adding a table (a new
search index, say) is a migration by itself; `schema_info.version` records the layout
and a gateway refuses to start on a database written by a newer one. Several instances
starting together serialise on an advisory lock (PostgreSQL) or the write lock (SQLite).
"""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

import gateway.bulk.tables
import gateway.store.auth_tables
import gateway.store.index  # noqa: F401  (registers the search index tables)
from gateway.store.database import Database
from gateway.store.schema import SCHEMA_VERSION, metadata

_DIALECTS = {"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect()}
_LOCK_KEY = 0x6269_6F62  # "biob"


def ddl(dialect: str) -> list[str]:
    """Every CREATE statement of the schema, in dependency order, for `dialect`."""
    d = _DIALECTS[dialect]
    out: list[str] = []
    for table in metadata.sorted_tables:
        out.append(str(CreateTable(table, if_not_exists=True).compile(dialect=d)))
        out.extend(str(CreateIndex(ix, if_not_exists=True).compile(dialect=d)) for ix in table.indexes)
    return out


async def migrate(db: Database) -> None:
    async with db.transaction() as tx:
        if db.dialect == "postgresql":
            await tx.execute(f"SELECT pg_advisory_xact_lock({_LOCK_KEY})")
        for statement in ddl(db.dialect):
            await tx.execute(statement)
        row = await tx.fetchone("SELECT value FROM schema_info WHERE key = 'version'")
        if row is not None and int(row[0]) > SCHEMA_VERSION:
            raise RuntimeError(
                f"database schema version {row[0]} is newer than this gateway's ({SCHEMA_VERSION}); upgrade the gateway"
            )
        if row is None:
            await tx.execute("INSERT INTO schema_info (key, value) VALUES ('version', ?)", (str(SCHEMA_VERSION),))
        else:
            await tx.execute("UPDATE schema_info SET value = ? WHERE key = 'version'", (str(SCHEMA_VERSION),))
