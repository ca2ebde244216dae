"""The export job tables, on the store's schema so `migrate` creates them with the rest.

Job state lives in the database, not in a worker's memory: every gateway instance answers
a status poll from here, and a job whose worker died is found by its expired lease.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from gateway.store.schema import metadata

bulk_jobs = Table(
    "bulk_jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("client_id", String(256), nullable=False, doc="the client that owns the job and may download its files"),
    Column("status", String(16), nullable=False, doc="accepted, in-progress, completed, failed or cancelled"),
    Column("request", Text, nullable=False, doc="the parsed kick-off (ExportRequest) as JSON"),
    Column("principal", Text, nullable=False, doc="who asked, as JSON: the runner discloses as this principal"),
    Column("transaction_time", BigInteger, nullable=False, doc="microseconds: the manifest's transactionTime"),
    Column("updated", BigInteger, nullable=False),
    Column("owner", String(64), nullable=True, doc="the worker holding the lease"),
    Column("lease_until", BigInteger, nullable=False, doc="microseconds; 0 when nobody holds the job"),
    Column("attempts", Integer, nullable=False),
    Column("written", Integer, nullable=False, doc="lines written so far (X-Progress)"),
    Column("error", Text, nullable=True, doc="why the job failed"),
    Column("expires_at", BigInteger, nullable=True, doc="microseconds; files and row are deleted then"),
    Index("ix_bulk_jobs_client_status", "client_id", "status"),
    Index("ix_bulk_jobs_status_lease", "status", "lease_until"),
)

bulk_files = Table(
    "bulk_files",
    metadata,
    Column("job_id", String(32), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("kind", String(8), nullable=False, doc="output or error"),
    Column("type", String(64), nullable=False),
    Column("part", Integer, nullable=False, doc="1, 2, ... per type: files of one type in order"),
    Column("count", Integer, nullable=False),
    Column("last_id", String(64), nullable=False, doc="resume point: the last resource id the file covers"),
)

bulk_members = Table(
    "bulk_members",
    metadata,
    Column("job_id", String(32), primary_key=True),
    Column("patient", String(64), primary_key=True),
)
"""The Patients a Group (or a `patient` parameter) named at kick-off: fixed with the
transactionTime, and joined in SQL so a cohort of any size needs no parameter list."""
