"""What operators see: JSON log lines with request ids and nothing secret or identifying in
them, and the Prometheus metrics — summed over the workers of a multi-worker gateway."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.observability.metrics import prepare_multiprocess
from tests.access.corpus import MRN, patient
from tests.auth.conftest import JWT_BEARER, assertion
from tests.ops.conftest import Cluster

METRICS = ("gateway_http_requests", "gateway_http_request_duration_seconds", "gateway_store_duration_seconds",
           "gateway_upstream_duration_seconds", "gateway_cache_lookups", "gateway_ingest_rows",
           "gateway_export_jobs", "gateway_auth_failures", "gateway_rate_limited", "gateway_ehr_breaker_state")


async def identifying_traffic(http: httpx.AsyncClient, cluster: Cluster) -> str:
    """Requests full of what must never be logged; returns the client assertion that was sent."""
    assert (await cluster.put(http, cluster.a, patient("LOG1", "MGH-7200001"))).status_code in (200, 201)
    signed = assertion(cluster.backend_id, cluster.backend_key, aud=cluster.token_url)
    await http.post(f"{cluster.a.url}/auth/token", data={"grant_type": "client_credentials",
                                                        "scope": "system/Patient.rs",
                                                        "client_assertion_type": JWT_BEARER,
                                                        "client_assertion": signed})
    for node in (cluster.a, cluster.b):
        for token in (cluster.writer, cluster.collaborator):
            found = await http.get(f"{node.url}/fhir/Patient", params={"identifier": f"{MRN}|MGH-7200001"},
                                   headers=cluster.headers(token, **{"X-Request-ID": f"trace-{node.port}"}))
            assert found.headers["x-request-id"] == f"trace-{node.port}"
        await http.get(f"{node.url}/fhir/Patient/LOG1", headers=cluster.headers("not-a-token"))
    return signed


async def test_log_lines_are_json_with_request_ids_and_hold_no_token_mrn_or_authorization(cluster: Cluster) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        signed = await identifying_traffic(http, cluster)
    await asyncio.sleep(0.5)
    requests = []
    for node in (cluster.a, cluster.b):
        for line in node.log.read_text().splitlines():
            entry = json.loads(line)
            assert {"timestamp", "level", "event"} <= entry.keys()
            if entry["event"] == "request":
                assert entry["request_id"] and entry["interaction"] and entry["status"]
                requests.append(entry)
        traced = [e for e in requests if e["request_id"] == f"trace-{node.port}"]
        assert len(traced) == 2 and {e["interaction"] for e in traced} == {"search-type"}
        assert all(e["client_id"] and e["duration_ms"] >= 0 for e in traced)
    assert any(e["status"] == 401 for e in requests)
    everything = "".join(path.read_text() for node in (cluster.a, cluster.b) for path in (node.log, node.err_path))
    for secret in (cluster.writer, cluster.collaborator, signed, "not-a-token", "Bearer", "MGH-"):
        assert secret not in everything, f"the logs hold {secret[:12]}..."


def samples(text: str) -> dict[str, float]:
    """Every sample as `name{label=value,...}` -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


async def test_metrics_are_exposed_and_summed_over_the_workers(cluster: Cluster) -> None:
    key = "gateway_http_requests_total{interaction=capabilities,status=200}"
    async with httpx.AsyncClient(timeout=30) as http:
        before = samples((await http.get(f"{cluster.b.url}/metrics")).text).get(key, 0.0)
        for _ in range(20):
            assert (await http.get(f"{cluster.b.url}/fhir/metadata")).status_code == 200
        await http.get(f"{cluster.b.url}/fhir/Patient/x", headers=cluster.headers("not-a-token"))
        scraped = samples((await http.get(f"{cluster.b.url}/metrics")).text)
        declared = (await http.get(f"{cluster.a.url}/metrics")).text
    assert scraped[key] - before == 20, "the two workers' counts are summed, whichever worker answers"
    assert scraped["gateway_auth_failures_total{reason=invalid_token}"] >= 1
    assert any(name.startswith("gateway_http_request_duration_seconds_bucket{interaction=capabilities")
               for name in scraped)
    for name in METRICS:
        assert f"# HELP {name}" in declared, f"{name} is not exposed"


def test_prepare_multiprocess_empties_the_operators_folder_or_makes_one_for_several_workers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "counter_123.db"
    stale.write_bytes(b"from a previous run")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    prepare_multiprocess(workers=1)
    assert not stale.exists()

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    prepare_multiprocess(workers=1)
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ, "one worker: the ordinary registry"
    prepare_multiprocess(workers=2)
    assert Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).is_dir()
