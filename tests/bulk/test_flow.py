"""The Bulk Data flow checked the way the Inferno Bulk Data test kit checks it (both engines):
kick-off headers, polling with Retry-After, manifest fields, downloads with and without a
token, every line of the right type and valid FHIR, cancel then 404."""

from __future__ import annotations

import fhirkit
import orjson

from tests.bulk.conftest import TOKEN, Bulk, principal

NDJSON = {"Accept": "application/fhir+ndjson"}


def errors(line: bytes) -> list[str]:
    """R4 structural errors of one resource (fhirkit: every issue with its path)."""
    return [str(i) for i in fhirkit.validate(line) if i.severity in ("error", "fatal")]


async def test_inferno_style_system_export(bulk: Bulk) -> None:
    kicked = await bulk.kick_off()
    assert kicked.status_code == 202
    status_url = kicked.headers["content-location"]

    polled = await bulk.http.get(status_url, headers={**TOKEN, "Accept": "application/json"})
    assert polled.status_code in (200, 202)
    if polled.status_code == 202:
        assert polled.headers["retry-after"].isdigit() and polled.headers["x-progress"]
    done = await bulk.wait(status_url)
    assert done.status_code == 200
    assert done.headers["content-type"].startswith("application/json")
    assert "expires" in done.headers
    manifest = done.json()
    assert set(manifest) == {"transactionTime", "request", "requiresAccessToken", "output", "error"}
    assert manifest["requiresAccessToken"] is True
    assert manifest["request"] == "http://testserver/fhir/$export"
    assert manifest["transactionTime"].endswith("Z")
    assert manifest["error"] == []
    assert {o["type"] for o in manifest["output"]} >= {"Patient", "Specimen", "Consent", "Group", "ResearchStudy"}

    for item in manifest["output"]:
        assert set(item) == {"type", "url", "count"}
        without = await bulk.http.get(item["url"], headers=NDJSON)
        assert without.status_code == 401
        r = await bulk.http.get(item["url"], headers={**TOKEN, **NDJSON})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/fhir+ndjson")
        lines = r.content.splitlines()
        assert len(lines) == item["count"]
        for line in lines:
            resource = orjson.loads(line)
            assert resource["resourceType"] == item["type"] and resource["id"]
            assert errors(line) == [], (line, errors(line))

    cancelled = await bulk.http.delete(status_url, headers=TOKEN)
    assert cancelled.status_code == 202
    gone = await bulk.http.get(status_url, headers=TOKEN)
    assert gone.status_code == 404 and gone.json()["resourceType"] == "OperationOutcome"
    assert (await bulk.http.delete(status_url, headers=TOKEN)).status_code == 404
    file_gone = await bulk.http.get(manifest["output"][0]["url"], headers={**TOKEN, **NDJSON})
    assert file_gone.status_code == 404


async def test_cancel_while_running_then_404(bulk: Bulk) -> None:
    await bulk.app.state.exports.dispatcher.stop()
    kicked = await bulk.kick_off()
    status_url = kicked.headers["content-location"]
    assert (await bulk.http.get(status_url, headers=TOKEN)).status_code == 202
    assert (await bulk.http.delete(status_url, headers=TOKEN)).status_code == 202
    r = await bulk.http.get(status_url, headers=TOKEN)
    assert r.status_code == 404 and "cancelled" in r.text


async def test_another_client_cannot_see_status_or_files(bulk: Bulk) -> None:
    manifest = await bulk.export(params={"_type": "Patient"})
    job = manifest["output"][0]["url"].split("/")[-2]
    bulk.who = principal(client="someone-else")
    assert (await bulk.http.get(f"/fhir/$export-status/{job}", headers=TOKEN)).status_code == 404
    assert (await bulk.http.delete(f"/fhir/$export-status/{job}", headers=TOKEN)).status_code == 404
    assert (await bulk.http.get(manifest["output"][0]["url"], headers={**TOKEN, **NDJSON})).status_code == 404
    path = manifest["output"][0]["url"].rsplit("/", 1)[0] + "/..%2F..%2Fgateway.db"
    bulk.who = principal()
    assert (await bulk.http.get(path, headers={**TOKEN, **NDJSON})).status_code == 404


async def test_every_job_writes_an_audit_event(bulk: Bulk) -> None:
    manifest = await bulk.export(params={"_type": "Specimen,Patient"})
    store = bulk.app.state.services.store
    rows = await store.db.fetchall("SELECT content FROM resources WHERE type = ?", ("AuditEvent",))
    events = [orjson.loads(r[0]) for r in rows]
    export_events = [e for e in events if e["type"]["code"] == "110106"]
    assert len(export_events) == 1
    event = export_events[0]
    assert event["outcome"] == "0"
    assert event["agent"][0]["who"]["identifier"]["value"] == "internal-client"
    detail = {d["type"]: d["valueString"] for d in event["entity"][0]["detail"]}
    assert detail["kind"] == "system" and detail["types"] == "Specimen,Patient"
    assert int(detail["Specimen"]) == sum(o["count"] for o in manifest["output"] if o["type"] == "Specimen")
    assert errors(orjson.dumps(event)) == []


async def test_expired_jobs_and_files_are_removed(bulk: Bulk) -> None:
    exports = bulk.app.state.exports
    exports.config.expiry_seconds = 0
    kicked = await bulk.kick_off(params={"_type": "Patient"})
    done = await bulk.wait(kicked.headers["content-location"])
    job = done.json()["output"][0]["url"].split("/")[-2]
    assert (exports.root / job).exists()
    await exports.sweep()
    assert not (exports.root / job).exists()
    assert (await bulk.http.get(kicked.headers["content-location"], headers=TOKEN)).status_code == 404


async def test_a_failing_job_reports_500_and_is_audited(bulk: Bulk, monkeypatch) -> None:
    async def broken(*_args: object) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(bulk.app.state.exports.runner, "_type", broken)
    kicked = await bulk.kick_off(params={"_type": "Patient"})
    done = await bulk.wait(kicked.headers["content-location"])
    assert done.status_code == 500
    assert "disk on fire" in done.json()["issue"][0]["diagnostics"]
    rows = await bulk.app.state.services.store.db.fetchall("SELECT content FROM resources WHERE type = ?",
                                                           ("AuditEvent",))
    assert [e["outcome"] for e in map(orjson.loads, (r[0] for r in rows)) if e["type"]["code"] == "110106"] == ["8"]


async def test_a_job_that_keeps_dying_is_failed_not_retried_forever(bulk: Bulk) -> None:
    exports = bulk.app.state.exports
    await exports.dispatcher.stop()
    kicked = await bulk.kick_off(params={"_type": "Patient"})
    job_id = kicked.headers["content-location"].rsplit("/", 1)[1]
    for attempt in range(exports.config.max_attempts):  # each claim is a worker that then died
        assert await exports.jobs.claim(job_id, f"dead-{attempt}", lease_us=-1) is not None
    await exports.runner.run(job_id)
    r = await bulk.http.get(kicked.headers["content-location"], headers=TOKEN)
    assert r.status_code == 500 and "giving up" in r.text
