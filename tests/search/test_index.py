"""The index follows every write path (REST create/update/delete, transactions, bulk put_many),
reindex rebuilds it, and a number parameter (none in R4 for our types) works end to end
through a registry with an extra SearchParameter (both engines)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from gateway.access.gate import Restriction
from gateway.search.engine import SearchEngine
from gateway.search.params import build_registry
from gateway.search.reindex import reindex
from gateway.served import STORED_TYPES
from gateway.store import Store
from gateway.store.index import indexer

from ..conftest import PgDatabases
from .conftest import Gateway

FHIR = {"Content-Type": "application/fhir+json"}
CAPACITY = {"resourceType": "SearchParameter", "url": "urn:test:SearchParameter/Specimen-capacity",
            "code": "capacity", "base": ["Specimen"], "type": "number",
            "expression": "Specimen.container.capacity.value"}
EVERYTHING = Restriction(frozenset(STORED_TYPES))


async def test_rest_writes_keep_the_index_current(gw: Gateway) -> None:
    body = {"resourceType": "Specimen", "status": "available", "subject": {"reference": "Patient/p3"},
            "identifier": [{"system": "urn:test", "value": "rest-1"}]}
    created = (await gw.client.post("/fhir/Specimen", json=body, headers=FHIR)).json()
    assert await gw.ids("Specimen?identifier=urn:test|rest-1") == [created["id"]]
    await gw.client.put(f"/fhir/Specimen/{created['id']}", json={**created, "status": "unavailable"}, headers=FHIR)
    assert await gw.ids("Specimen?identifier=urn:test|rest-1&status=available") == []
    assert await gw.ids("Specimen?identifier=urn:test|rest-1&status=unavailable") == [created["id"]]
    await gw.client.delete(f"/fhir/Specimen/{created['id']}")
    assert await gw.ids("Specimen?identifier=urn:test|rest-1") == []
    assert await gw.ids(f"Specimen?_id={created['id']}") == []
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0c3a8d3e-1a7f-4c1e-9a51-8b3a3c2a0001", "request": {"method": "POST", "url": "Patient"},
         "resource": {"resourceType": "Patient", "name": [{"family": "Transactionson"}]}},
        {"request": {"method": "POST", "url": "Specimen"},
         "resource": {"resourceType": "Specimen", "status": "available",
                      "subject": {"reference": "urn:uuid:0c3a8d3e-1a7f-4c1e-9a51-8b3a3c2a0001"}}},
    ]}
    r = await gw.client.post("/fhir", json=transaction, headers=FHIR)
    assert r.status_code == 200, r.text
    found = await gw.ids("Specimen?subject.family=transactionson")
    assert len(found) == 1
    await gw.client.delete(f"/fhir/Specimen/{found[0]}")


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_number_parameter_and_reindex(engine: str, pg_databases: PgDatabases) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="gw-index-"))
    url = f"sqlite:///{tmp}/gateway.db" if engine == "sqlite" else await pg_databases.create()
    plain = await Store.open(url)
    specimens = [{"resourceType": "Specimen", "id": f"n{v}", "container": [{"capacity": {"value": v, "unit": "mL"}}]}
                 for v in (1, 2.5, 10)]
    await plain.put_many(specimens)  # indexed without the capacity parameter
    registry = build_registry(extra=[CAPACITY])
    store = Store(plain.db, hooks=[indexer(registry, plain.dialect)])
    engine_ = SearchEngine(store, registry)

    async def ids(query: str) -> list[str]:
        params = [tuple(p.split("=", 1)) for p in query.split("&")]
        page = await engine_.search("Specimen", params, EVERYTHING, strict=True)
        return sorted(s.id for s in page.matches)

    try:
        assert await ids("capacity=gt0") == []
        assert await reindex(store, ["Specimen"], registry) == 3
        assert await ids("capacity=2.5") == ["n2.5"]
        assert await ids("capacity=gt2") == ["n10", "n2.5"]
        assert await ids("capacity=le2.5") == ["n1", "n2.5"]
        assert await ids("capacity=ne10") == ["n1", "n2.5"]
        assert await ids("capacity=1") == ["n1"]
        assert await ids("capacity=ap9.5") == ["n10"]
        assert await ids("capacity:missing=false") == ["n1", "n10", "n2.5"]
        await store.put_many([{**specimens[0], "container": [{"capacity": {"value": 3}}]}])
        assert await ids("capacity=3.0") == ["n1"]
        assert await engine_.ids("Specimen", [("capacity", "lt5")], EVERYTHING, 10) in (["n1", "n2.5"], ["n2.5", "n1"])
    finally:
        await store.close()
