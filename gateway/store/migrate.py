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


async def _existing(db: Database) -> set[str]:
    """Names of the tables and indexes the database has."""
    if db.dialect == "postgresql":
        rows = await db.fetchall("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() UNION ALL "
                                 "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
    else:
        rows = await db.fetchall("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")
    return {r[0] for r in rows}


async def is_current(db: Database) -> bool:
    """Whether every table and index exists and the recorded version is this gateway's.

    Checked before any DDL because `CREATE ... IF NOT EXISTS` still locks its table on PostgreSQL:
    an instance (or a CLI command) starting beside busy ones would otherwise queue behind their
    writes, and deadlock with them (seen: a writer holding one table while the migration held another).
    """
    expected = {t.name for t in metadata.sorted_tables} | {
        ix.name for t in metadata.sorted_tables for ix in t.indexes if ix.name}
    if not expected <= await _existing(db):
        return False
    row = await db.fetchone("SELECT value FROM schema_info WHERE key = 'version'")
    return row is not None and int(row[0]) == SCHEMA_VERSION


async def migrate(db: Database) -> None:
    if await is_current(db):
        return
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
