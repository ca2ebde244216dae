"""The store's tables, described once with SQLAlchemy Core for both engines.

`resources` holds the current version of every resource (one row read by id: the hot
path); `resource_versions` holds every version ever written, immutable (vread, history).
`compartment` is the Patient a resource belongs to (Specimen.subject, Consent.patient,
ResearchSubject.individual, the Patient itself), kept as a column so the access layer can
confine `patient/` scopes and apply consent without parsing JSON.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData()

SCHEMA_VERSION = 1

_Seq = BigInteger().with_variant(Integer(), "sqlite")

schema_info = Table(
    "schema_info",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)

resources = Table(
    "resources",
    metadata,
    Column("type", String(64), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("ts", BigInteger, nullable=False, doc="lastUpdated, microseconds since the epoch"),
    Column("deleted", Boolean, nullable=False),
    Column("compartment", String(64), nullable=True),
    Column("content", LargeBinary, nullable=False),
    Index("ix_resources_type_ts", "type", "ts"),
    Index("ix_resources_compartment", "compartment"),
)

resource_versions = Table(
    "resource_versions",
    metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=True),
    Column("type", String(64), nullable=False),
    Column("id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("method", String(8), nullable=False, doc="POST, PUT or DELETE: Bundle.entry.request.method in history"),
    Column("compartment", String(64), nullable=True),
    Column("content", LargeBinary, nullable=False),
    UniqueConstraint("type", "id", "version", name="uq_resource_versions_tiv"),
    Index("ix_versions_type_ts", "type", "ts"),
    Index("ix_versions_ts", "ts"),
)
