"""history: instance, type, system; _since, _count and paging (both engines)."""

from __future__ import annotations

import httpx

FHIR = {"Content-Type": "application/fhir+json"}


async def test_history_levels_and_paging(app_client: httpx.AsyncClient) -> None:
    for i in range(7):
        await app_client.put(f"/fhir/Patient/p{i}", json={"resourceType": "Patient", "id": f"p{i}"}, headers=FHIR)
    await app_client.put("/fhir/Patient/p0", json={"resourceType": "Patient", "id": "p0", "active": True},
                         headers=FHIR)
    await app_client.put("/fhir/Group/g1", json={"resourceType": "Group", "id": "g1", "type": "person",
                                                 "actual": True}, headers=FHIR)
    instance = (await app_client.get("/fhir/Patient/p0/_history")).json()
    assert instance["type"] == "history" and instance["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in instance["entry"]] == ["2", "1"]
    assert instance["entry"][0]["request"] == {"method": "PUT", "url": "Patient/p0"}

    seen, url, pages = [], "/fhir/Patient/_history?_count=3", 0
    while url:
        page = (await app_client.get(url)).json()
        assert page["total"] == 8
        seen += [(e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in page["entry"]]
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        url = nxt[0].removeprefix("http://testserver") if nxt else None
        pages += 1
    assert len(seen) == 8 and len(set(seen)) == 8 and pages == 3

    system = (await app_client.get("/fhir/_history?_count=1000")).json()
    types = [e["resource"]["resourceType"] for e in system["entry"]]
    data = [t for t in types if t in ("Patient", "Group")]
    assert data[0] == "Group" and len(data) == 9
    assert system["total"] == len(system["entry"])  # the published profiles are versions too


async def test_history_since(app_client: httpx.AsyncClient) -> None:
    await app_client.put("/fhir/Patient/a", json={"resourceType": "Patient", "id": "a"}, headers=FHIR)
    second = await app_client.put("/fhir/Patient/b", json={"resourceType": "Patient", "id": "b"}, headers=FHIR)
    since = second.json()["meta"]["lastUpdated"]
    r = (await app_client.get("/fhir/_history", params={"_since": since})).json()
    # the audit trail of the two PUTs is history too (AuditEvents, written after them)
    assert [e["resource"]["id"] for e in r["entry"] if e["resource"]["resourceType"] != "AuditEvent"] == ["b"]


async def test_deleted_versions_in_history(app_client: httpx.AsyncClient) -> None:
    await app_client.put("/fhir/Patient/a", json={"resourceType": "Patient", "id": "a"}, headers=FHIR)
    await app_client.delete("/fhir/Patient/a")
    r = (await app_client.get("/fhir/Patient/a/_history")).json()
    assert r["entry"][0]["request"]["method"] == "DELETE"
    assert r["entry"][0]["response"]["status"] == "410 Gone"
    assert "resource" not in r["entry"][0]
