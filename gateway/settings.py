"""One Settings object for the server and the CLI, read from `GATEWAY_*` and `.env`.

The server and every CLI command read the same settings, so in a checkout the CLI works
on the same store as `make run`'s server (INTERFACES.md, "Settings").
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_file=".env", extra="ignore")

    database_url: str = Field("sqlite:///./data/gateway.db", description="sqlite:///FILE or postgresql://...")
    redis_url: str | None = Field(None, description="unset: in-process caches, single instance only")
    redis_prefix: str = Field("gw:", description="prefix of every Redis key this gateway writes")
    base_url: str = Field("http://127.0.0.1:8080/fhir", description="public FHIR base: links, token aud")
    auth_disabled: bool = Field(False, description="dev only: every request is an internal system principal")
    max_body_bytes: int = Field(10 * 1024 * 1024, description="larger request bodies get 413")
    default_count: int = Field(20, description="search page size when _count is absent")
    max_count: int = Field(1000, description="_count cap")
    data_dir: Path = Field(Path("./data"), description="keys, export files")
    profiles_dir: Path = Field(Path(__file__).resolve().parent.parent / "profiles")
    ehr_base_url: str | None = None
    ehr_client_id: str | None = None
    ehr_private_key: Path | None = None
    ehr_timeout: float = Field(10.0, description="seconds per upstream EHR request, retries included")
    ehr_breaker_failures: int = Field(5, description="consecutive upstream failures that open the breaker")
    ehr_breaker_reset: float = Field(30.0, description="seconds before an open breaker lets a probe through")
    ehr_cache_ttl: float = Field(60.0, description="seconds an upstream answer is served from cache")
    trusted_issuers: str = Field("[]", description="JSON list of {iss, jwks_uri, audience?}")
    rate_limit: float = Field(0.0, description="requests/s per client (burst 2x); 0 = off")
    feasibility_threshold: int = Field(11, description="$biobank-availability cells below this are shown as <N")
    collaborator_pseudonyms: bool = Field(False, description="external principals get their own stable pseudonym "
                                          "of every subject code (HMAC), so two collaborators cannot link their data")
    pseudonym_secret: SecretStr | None = Field(None, description="required with collaborator_pseudonyms: >= 32 "
                                               "random characters, the same on every instance, never changed")
    token_lifetime: int = Field(3600, description="seconds an access token of the built-in server lives")
    log_level: str = Field("info", description="debug | info | warning | error: JSON log lines on stdout")
