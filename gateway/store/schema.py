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

consent_state = Table(
    "consent_state",
    metadata,
    Column("patient", String(64), primary_key=True),
    Column("consent_id", String(64), nullable=False, doc="the Consent resource in force"),
    Column("source_status", String(16), nullable=False, doc="ACTIVE, WITHDRAWN, EXPIRED or SUPERSEDED"),
    Column("research", Boolean, nullable=False),
    Column("genetic", Boolean, nullable=False),
    Column("ehr_linkage", Boolean, nullable=False),
    Column("recontact", Boolean, nullable=False),
    Column("external_sharing", Boolean, nullable=False),
    Column("commercial", Boolean, nullable=False),
    Column("expires_us", BigInteger, nullable=True),
    Column("withdrawal_scope", String(16), nullable=True),
    Column("withdrawn_us", BigInteger, nullable=True),
    Index("ix_consent_state_sharing", "research", "external_sharing"),
)
"""Each subject's consent in force, derived from its Consent resources by the access layer's
write hook in the same transaction as the Consent write, so every instance sees a withdrawal
on its very next request. Time-dependent parts (expiry, withdrawal date) are kept as instants
and compared with the request's time, never precomputed."""

pseudonyms = Table(
    "pseudonyms",
    metadata,
    Column("client_id", String(256), primary_key=True),
    Column("pseudonym", String(64), primary_key=True),
    Column("subject", String(64), nullable=False),
)
"""Per-collaborator pseudonyms given out (gateway/access/pseudonyms.py): written by the egress gate
before a pseudonym first leaves, so what a client sends back resolves on every instance."""

audit_queue = Table(
    "audit_queue",
    metadata,
    Column("seq", _Seq, primary_key=True, autoincrement=True),
    Column("recorded_us", BigInteger, nullable=False),
    Column("client_id", String(256), nullable=False),
    Column("audience", String(16), nullable=False),
    Column("interaction", String(64), nullable=False),
    Column("method", String(8), nullable=False),
    Column("path", String, nullable=False),
    Column("query", String, nullable=False),
    Column("status", Integer, nullable=False),
    Column("released", String, nullable=False, doc="space-separated Type/id, at most 200"),
    Column("released_count", Integer, nullable=False),
    Column("address", String(64), nullable=True),
)
"""Accesses recorded but not yet turned into AuditEvent resources (see gateway/access/audit.py):
a compact, append-only row per request, so the request pays microseconds and the audit trail
is durable as soon as the batch is written."""
