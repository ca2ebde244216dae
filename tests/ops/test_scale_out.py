"""Two gateway processes on one PostgreSQL and one Redis behave as one server (issue 12, "Scale-out")."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import httpx

from tests.access.corpus import SHARE, consent, patient
from tests.ops.conftest import Cluster


async def test_concurrent_writes_through_two_processes_never_lose_a_version(cluster: Cluster) -> None:
    ids = [f"race-{uuid.uuid4().hex[:8]}-{n}" for n in range(3)]
    writes = [(ids[n % 3], (cluster.a, cluster.b)[n % 2], {"resourceType": "Patient", "id": ids[n % 3],
                                                          "birthDate": f"19{n:02d}-01-01"}) for n in range(60)]
    async with httpx.AsyncClient(timeout=120) as http:
        answers = await asyncio.gather(*[cluster.put(http, node, body) for _, node, body in writes])
        assert {a.status_code for a in answers} <= {200, 201, 409}, [a.text for a in answers if a.status_code >= 400]
        written: dict[str, list[httpx.Response]] = defaultdict(list)
        for (id_, _, _), answer in zip(writes, answers, strict=True):
            if answer.status_code in (200, 201):
                written[id_].append(answer)
        for id_ in ids:
            versions = sorted(int(a.json()["meta"]["versionId"]) for a in written[id_])
            assert versions == list(range(1, len(versions) + 1)), f"{id_}: versions {versions} are not contiguous"
            for node in (cluster.a, cluster.b):
                history = (await http.get(f"{node.url}/fhir/Patient/{id_}/_history?_count=100",
                                          headers=cluster.headers(cluster.writer))).json()
                assert history["total"] == len(versions)
                assert {e["resource"]["birthDate"] for e in history["entry"]} == \
                       {a.json()["birthDate"] for a in written[id_]}


async def test_consent_withdrawn_through_one_process_is_enforced_by_the_other_on_the_next_request(
        cluster: Cluster) -> None:
    subject = f"W{uuid.uuid4().hex[:8]}"
    seen_by_collaborator = cluster.headers(cluster.collaborator)
    async with httpx.AsyncClient(timeout=60) as http:
        sample = {"resourceType": "Specimen", "id": f"SP{subject}", "status": "available",
                  "subject": {"reference": f"Patient/{subject}"}}
        for resource in (patient(subject, "MGH-7100001"), sample, consent(f"C{subject}", subject, "ACTIVE", SHARE)):
            assert (await cluster.put(http, cluster.a, resource)).status_code == 201
        shown = await http.get(f"{cluster.b.url}/fhir/Specimen/SP{subject}", headers=seen_by_collaborator)
        assert shown.status_code == 200, "an active consent with external sharing shows the specimen"
        assert "MGH-" not in (await http.get(f"{cluster.b.url}/fhir/Patient/{subject}",
                                             headers=seen_by_collaborator)).text

        withdrawn = consent(f"C{subject}", subject, "WITHDRAWN", SHARE, withdrawal=("NO_FURTHER_USE", "2024-05-01"))
        assert (await cluster.put(http, cluster.a, withdrawn)).status_code == 200
        for _ in range(4):  # B has two workers: each must refuse
            read = await http.get(f"{cluster.b.url}/fhir/Specimen/SP{subject}", headers=seen_by_collaborator)
            assert read.status_code == 404, read.text
            found = (await http.get(f"{cluster.b.url}/fhir/Specimen?patient=Patient/{subject}",
                                    headers=seen_by_collaborator)).json()
            assert not found.get("entry")
        internal = await http.get(f"{cluster.b.url}/fhir/Specimen/SP{subject}", headers=cluster.headers(cluster.writer))
        assert internal.status_code == 200, "biobank staff still see the specimen"
