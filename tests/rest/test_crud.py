"""Create, read, vread, update, delete and their headers, as a FHIR client sees them (both engines)."""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime

import httpx

FHIR = {"Content-Type": "application/fhir+json"}


def specimen(id_: str | None = None, status: str = "available", patient: str = "p1") -> dict:
    body = {"resourceType": "Specimen", "status": status, "subject": {"reference": f"Patient/{patient}"}}
    if id_:
        body["id"] = id_
    return body


async def test_create_assigns_id_version_and_location(app_client: httpx.AsyncClient) -> None:
    r = await app_client.post("/fhir/Specimen", json=specimen("client-chosen"), headers=FHIR)
    assert r.status_code == 201
    body = r.json()
    assert body["id"] != "client-chosen"
    assert body["meta"]["versionId"] == "1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"] == f"http://testserver/fhir/Specimen/{body['id']}/_history/1"
    assert r.headers["content-type"].startswith("application/fhir+json")
    modified = r.headers["last-modified"]  # RFC 9110 IMF-fixdate of meta.lastUpdated, to the second
    updated = datetime.fromisoformat(body["meta"]["lastUpdated"].replace("Z", "+00:00")).replace(microsecond=0)
    assert modified.endswith(" GMT") and parsedate_to_datetime(modified) == updated
    assert modified == updated.strftime("%a, %d %b %Y %H:%M:%S GMT")
    read = await app_client.get(f"/fhir/Specimen/{body['id']}")
    assert read.status_code == 200
    assert read.json() == body


async def test_update_as_create_then_update_makes_versions(app_client: httpx.AsyncClient) -> None:
    r1 = await app_client.put("/fhir/Specimen/s1", json=specimen("s1"), headers=FHIR)
    assert r1.status_code == 201
    r2 = await app_client.put("/fhir/Specimen/s1", json=specimen("s1", "unavailable"), headers=FHIR)
    assert r2.status_code == 200
    assert r2.json()["meta"]["versionId"] == "2"
    v1 = await app_client.get("/fhir/Specimen/s1/_history/1")
    assert v1.status_code == 200 and v1.json()["status"] == "available"
    v2 = await app_client.get("/fhir/Specimen/s1/_history/2")
    assert v2.json()["status"] == "unavailable"
    missing = await app_client.get("/fhir/Specimen/s1/_history/3")
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"


async def test_if_match_checks_version(app_client: httpx.AsyncClient) -> None:
    await app_client.put("/fhir/Specimen/s1", json=specimen("s1"), headers=FHIR)
    stale = await app_client.put("/fhir/Specimen/s1", json=specimen("s1", "unavailable"),
                                 headers={**FHIR, "If-Match": 'W/"7"'})
    assert stale.status_code == 412
    assert stale.json()["issue"][0]["code"] == "conflict"
    ok = await app_client.put("/fhir/Specimen/s1", json=specimen("s1", "unavailable"),
                              headers={**FHIR, "If-Match": 'W/"1"'})
    assert ok.status_code == 200 and ok.headers["etag"] == 'W/"2"'


async def test_conditional_read_answers_304(app_client: httpx.AsyncClient) -> None:
    r = await app_client.put("/fhir/Specimen/s1", json=specimen("s1"), headers=FHIR)
    same = await app_client.get("/fhir/Specimen/s1", headers={"If-None-Match": r.headers["etag"]})
    assert same.status_code == 304 and same.content == b""
    other = await app_client.get("/fhir/Specimen/s1", headers={"If-None-Match": 'W/"9"'})
    assert other.status_code == 200
    since = await app_client.get("/fhir/Specimen/s1", headers={"If-Modified-Since": r.headers["last-modified"]})
    assert since.status_code == 304
    older = await app_client.get("/fhir/Specimen/s1", headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert older.status_code == 200


async def test_delete_is_soft_and_versioned(app_client: httpx.AsyncClient) -> None:
    await app_client.put("/fhir/Specimen/s1", json=specimen("s1"), headers=FHIR)
    d = await app_client.delete("/fhir/Specimen/s1")
    assert d.status_code == 204
    gone = await app_client.get("/fhir/Specimen/s1")
    assert gone.status_code == 410
    assert gone.json()["issue"][0]["code"] == "deleted"
    assert (await app_client.get("/fhir/Specimen/s1/_history/1")).status_code == 200
    assert (await app_client.get("/fhir/Specimen/s1/_history/2")).status_code == 410
    again = await app_client.delete("/fhir/Specimen/s1")
    assert again.status_code == 204
    revived = await app_client.put("/fhir/Specimen/s1", json=specimen("s1"), headers=FHIR)
    assert revived.status_code == 201 and revived.json()["meta"]["versionId"] == "3"


async def test_prefer_return(app_client: httpx.AsyncClient) -> None:
    minimal = await app_client.post("/fhir/Specimen", json=specimen(), headers={**FHIR, "Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b"" and "location" in minimal.headers
    oo = await app_client.post("/fhir/Specimen", json=specimen(), headers={**FHIR, "Prefer": "return=OperationOutcome"})
    assert oo.status_code == 201 and oo.json()["resourceType"] == "OperationOutcome"


async def test_gzip_when_asked(app_client: httpx.AsyncClient) -> None:
    big = specimen("big")
    big["note"] = [{"text": "x" * 5000}]
    await app_client.put("/fhir/Specimen/big", json=big, headers=FHIR)
    r = await app_client.get("/fhir/Specimen/big", headers={"Accept-Encoding": "gzip"})
    assert r.headers.get("content-encoding") == "gzip"
    assert r.json()["note"][0]["text"] == "x" * 5000


async def test_json_formats_accepted(app_client: httpx.AsyncClient) -> None:
    await app_client.put("/fhir/Specimen/s1", json=specimen("s1"), headers=FHIR)
    for accept in ("application/fhir+json", "application/json", "*/*"):
        assert (await app_client.get("/fhir/Specimen/s1", headers={"Accept": accept})).status_code == 200
    assert (await app_client.get("/fhir/Specimen/s1?_format=json")).status_code == 200
    plain = await app_client.put("/fhir/Specimen/s2", json=specimen("s2"),
                                 headers={"Content-Type": "application/json"})
    assert plain.status_code == 201
