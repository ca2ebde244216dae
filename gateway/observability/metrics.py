"""Prometheus metrics of the gateway and the small functions other modules call to record them.

Multiprocess-safe: with several uvicorn workers every process writes its samples to
`PROMETHEUS_MULTIPROC_DIR` (prometheus-client reads that variable when it is first
imported, so `prepare_multiprocess` must run in the parent before the workers start) and
`/metrics` aggregates the files of all workers, whichever worker answers the scrape.

Label values are always from small fixed sets (route names, status codes, reasons chosen by
the code) — never ids, paths or query values, which would be unbounded and could carry PHI.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}

REQUESTS = Counter("gateway_http_requests", "HTTP requests answered", ["interaction", "status"])
REQUEST_SECONDS = Histogram("gateway_http_request_duration_seconds", "time to answer an HTTP request",
                            ["interaction", "status"], buckets=LATENCY)
STORE_SECONDS = Histogram("gateway_store_duration_seconds", "time of a store operation", ["operation"],
                          buckets=LATENCY)
UPSTREAM_SECONDS = Histogram("gateway_upstream_duration_seconds", "time of a request to the EHR",
                             ["interaction", "outcome"], buckets=LATENCY)
CACHE_LOOKUPS = Counter("gateway_cache_lookups", "cache lookups (hit ratio = hit / (hit + miss))",
                        ["cache", "result"])
INGEST_ROWS = Counter("gateway_ingest_rows", "source rows handled by a load", ["record_set", "outcome"])
EXPORT_JOBS = Counter("gateway_export_jobs", "bulk export jobs by event", ["event"])
AUTH_FAILURES = Counter("gateway_auth_failures", "requests refused by authentication or authorization",
                        ["reason"])
RATE_LIMITED = Counter("gateway_rate_limited", "requests refused with 429 by the per-client rate limit")
BREAKER = Gauge("gateway_ehr_breaker_state", "EHR circuit breaker: 0 closed, 1 half-open, 2 open",
                multiprocess_mode="mostrecent")


_REQUEST_CHILDREN: dict[tuple[str, int], tuple[Any, Any]] = {}
_STORE_CHILDREN: dict[str, Any] = {}
"""Labelled children by label values, looked up once: `labels()` costs more than the sample itself
on the per-request path, and the label sets are small and fixed (route names, status codes)."""


def request(interaction: str, status: int, seconds: float) -> None:
    """One answered HTTP request (ObserveRequests calls this for every request)."""
    children = _REQUEST_CHILDREN.get((interaction, status))
    if children is None:
        children = _REQUEST_CHILDREN[interaction, status] = (REQUESTS.labels(interaction, str(status)),
                                                             REQUEST_SECONDS.labels(interaction, str(status)))
    children[0].inc()
    children[1].observe(seconds)


def store_latency(operation: str, seconds: float) -> None:
    """A store operation such as `read`, `search`, `transaction`."""
    child = _STORE_CHILDREN.get(operation)
    if child is None:
        child = _STORE_CHILDREN[operation] = STORE_SECONDS.labels(operation)
    child.observe(seconds)


def upstream_latency(interaction: str, outcome: str, seconds: float) -> None:
    """One request to the EHR; `outcome` such as `ok`, `error`, `timeout`."""
    UPSTREAM_SECONDS.labels(interaction, outcome).observe(seconds)


def cache_lookup(cache: str, hit: bool) -> None:
    """One lookup in a named cache (`jwks`, `ehr-answers`, `consent`, ...)."""
    CACHE_LOOKUPS.labels(cache, "hit" if hit else "miss").inc()


def ingest_rows(record_set: str, outcome: str, count: int = 1) -> None:
    """Rows of a load by outcome: `created`, `updated`, `unchanged`, `rejected`."""
    INGEST_ROWS.labels(record_set, outcome).inc(count)


def export_job(event: str) -> None:
    """A bulk export job `kicked-off`, `completed`, `failed` or `cancelled`."""
    EXPORT_JOBS.labels(event).inc()


def auth_failure(reason: str) -> None:
    """A refused request: `missing_token`, `invalid_token`, `insufficient_scope`, `invalid_client`, ..."""
    AUTH_FAILURES.labels(reason).inc()


def rate_limited() -> None:
    RATE_LIMITED.inc()


def breaker_state(state: str) -> None:
    """The EHR breaker as `closed`, `half-open` or `open`."""
    BREAKER.set(BREAKER_STATES[state])


def exposition() -> tuple[bytes, str]:
    """The text format of every metric (of every worker when multiprocess) and its content type."""
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def multiprocess_dir() -> Path | None:
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


def prepare_multiprocess(workers: int) -> None:
    """Before uvicorn starts `workers` processes: give them one empty directory to share.

    An operator's PROMETHEUS_MULTIPROC_DIR is emptied (files of a previous run would be
    counted again); with several workers and none set, a fresh temporary one is made and
    removed at exit. With one worker and none set, the ordinary in-process registry is used.
    """
    folder = multiprocess_dir()
    if folder is None:
        if workers <= 1:
            return
        folder = Path(tempfile.mkdtemp(prefix="gateway-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
        atexit.register(shutil.rmtree, folder, ignore_errors=True)  # spawned workers do not inherit this
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()

