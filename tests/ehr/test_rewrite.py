"""The EHR-specific part of pseudonymisation, resource by resource."""

from __future__ import annotations

import orjson

from gateway.ehr.keys import Keys
from gateway.ehr.rewrite import Rewriter

EHR = "https://ehr.hospital.test/fhir"
GW = "https://gw.test/fhir"


def observation() -> dict:
    return {
        "resourceType": "Observation", "id": "eObs1", "meta": {"source": "#epic", "versionId": "3"},
        "identifier": [{"system": "urn:oid:1.2.3", "value": "OBS-1"}],
        "subject": {"reference": f"{EHR}/Patient/ePat1", "display": "Maria Garcia"},
        "encounter": {"reference": "Encounter/eEnc9", "identifier": {"value": "V-77"}},
        "performer": [{"reference": "Practitioner/ePr1", "display": "Dr. A"}, {"reference": "Patient/eOther"}],
        "hasMember": [{"reference": "Observation/eObs2"}],
        "specimen": {"reference": "#sp"},
        "contained": [{"resourceType": "Specimen", "id": "sp", "subject": {"reference": "Patient/ePat1"}}],
        "extension": [{"url": f"{EHR}/StructureDefinition/x", "valueUri": f"{EHR}/Binary/b1"}],
        "effectiveDateTime": "2024-05-01T10:00:00Z",
    }


def rewriter(secret: bytes = b"k" * 32) -> Rewriter:
    return Rewriter(EHR, GW, Keys(secret))


def test_external_rewrite_replaces_ehr_ids_and_references() -> None:
    r = rewriter()
    out = r.external(observation(), "ePat1", "S1")
    res = out.resource
    assert res["id"] == r.gateway_id("Observation", "eObs1") != "eObs1"
    assert res["subject"] == {"reference": "Patient/S1"}
    assert res["encounter"] == {"reference": f"Encounter/{r.gateway_id('Encounter', 'eEnc9')}"}
    assert res["performer"] == [{"display": "Dr. A"}]  # the EHR's practitioner and another patient lose their target
    assert res["hasMember"] == [{"reference": f"Observation/{r.gateway_id('Observation', 'eObs2')}"}]
    assert res["specimen"] == {"reference": "#sp"} and res["contained"][0]["subject"] == {"reference": "Patient/S1"}
    assert "identifier" not in res and "source" not in res["meta"] and res["meta"]["versionId"] == "3"
    assert res["effectiveDateTime"] == "2024-05-01T10:00:00Z"
    text = orjson.dumps(res).decode()
    for secret in ("ePat1", "eObs1", "eEnc9", "ePr1", "eOther", "Maria", "ehr.hospital.test", "OBS-1", "V-77"):
        assert secret not in text
    assert ("Encounter", r.gateway_id("Encounter", "eEnc9"), "eEnc9") in out.ids
    assert ("Observation", res["id"], "eObs1") == out.ids[-1]


def test_gateway_ids_are_stable_per_key_and_differ_between_keys() -> None:
    assert rewriter().gateway_id("Condition", "c1") == rewriter().gateway_id("Condition", "c1")
    assert rewriter().gateway_id("Condition", "c1") != rewriter().gateway_id("Observation", "c1")
    assert rewriter().gateway_id("Condition", "c1") != rewriter(b"x" * 32).gateway_id("Condition", "c1")


def test_internal_rewrite_keeps_ids_and_only_moves_urls_to_the_gateway() -> None:
    res = rewriter().internal(observation())
    assert res["id"] == "eObs1" and res["subject"]["reference"] == f"{GW}/Patient/ePat1"
    assert res["identifier"] == observation()["identifier"]
    assert EHR not in orjson.dumps(res).decode()
