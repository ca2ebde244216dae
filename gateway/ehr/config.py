"""The EHR proxy's tunables in one place, read from Settings where it has them.

`GATEWAY_EHR_TIMEOUT` and the breaker defaults are a contract (INTERFACES.md, "EHR proxy
defaults"): the breaker opens after 5 consecutive failures and probes again after 30 s.
The other figures have no setting of their own yet; `from_settings` picks up
`ehr_breaker_failures`, `ehr_breaker_reset`, `ehr_cache_ttl` when Settings grows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class EhrConfig:
    base_url: str
    gateway_base: str
    client_id: str | None = None
    private_key: Path | None = None
    data_dir: Path = Path("./data")
    timeout: float = 10.0
    """Seconds for one upstream call, retries included: the client never waits longer."""
    connect_timeout: float = 3.0
    retries: int = 2
    """Extra attempts of an idempotent GET after a 5xx or a connection error."""
    backoff: float = 0.05
    """Base of the exponential backoff (seconds); each wait is drawn uniformly up to base * 2^attempt."""
    breaker_failures: int = 5
    breaker_reset: float = 30.0
    cache_ttl: float = 60.0
    """Seconds an upstream answer is served without asking the EHR; after that it is revalidated."""
    stale_ttl: float = 3600.0
    """Seconds a stale answer is kept for ETag revalidation."""
    link_ttl: float = 3600.0
    """Seconds a biobank-Patient -> EHR-Patient translation is trusted."""
    pseudonym_ttl: float = 30 * 86400.0
    """Seconds a gateway id of an EHR resource stays resolvable (reads by an external principal)."""
    page_ttl: float = 3600.0
    """Seconds a gateway page token stays valid."""
    max_connections: int = 100
    scope: str = "system/*.rs"
    """What the gateway asks the EHR's authorization server for (SMART backend services)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> EhrConfig:
        if not settings.ehr_base_url:
            raise ValueError("GATEWAY_EHR_BASE_URL is not set: the EHR proxy is off")
        optional = {name: getattr(settings, f"ehr_{name}") for name in ("breaker_failures", "breaker_reset",
                                                                        "cache_ttl")
                    if getattr(settings, f"ehr_{name}", None) is not None}
        return cls(
            base_url=settings.ehr_base_url.rstrip("/"), gateway_base=settings.base_url.rstrip("/"),
            client_id=settings.ehr_client_id, private_key=settings.ehr_private_key, data_dir=settings.data_dir,
            timeout=settings.ehr_timeout, connect_timeout=min(3.0, settings.ehr_timeout), **optional,
        )
