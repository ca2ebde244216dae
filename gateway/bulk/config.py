"""Export settings, read from `GATEWAY_EXPORT_*` like every other setting of the gateway.

Kept beside the code that uses them (and out of the shared `Settings`) because only the
bulk package reads them; the files themselves go under `Settings.data_dir / "exports"`.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ExportSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_EXPORT_", env_file=".env", extra="ignore")

    max_jobs_per_client: int = Field(2, description="running jobs of one client before a kick-off gets 429")
    workers: int = Field(2, description="jobs this instance runs at the same time")
    file_max_bytes: int = Field(64 * 1024 * 1024, description="an NDJSON file is closed once it reaches this size")
    page_size: int = Field(1000, description="rows read per keyset page")
    expiry_seconds: int = Field(24 * 3600, description="files and job state are deleted this long after completion")
    lease_seconds: float = Field(30.0, description="a job whose worker has not renewed its lease this long is resumed")
    max_attempts: int = Field(3, description="a job started this many times without finishing is failed")
    retry_after: int = Field(2, description="Retry-After (s) of a status answer while a job runs")
