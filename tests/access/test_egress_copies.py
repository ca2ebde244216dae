"""The egress gate's fast paths give exactly what the full parse and walk give.

`Gate.disclose_many` leaves a resource unparsed when its plan says nothing can change it
(`Plan.changes`), and its walk stops once it removed every occurrence of what it removes
(`_Walk.left`). Here every resource of the access corpus, and variants that hold each kind
of thing the rules remove, goes through the gate and through the slow path — parse, the full
walk, serialise — for collaborators with and without genetic consent, with and without their
own pseudonyms: the bytes must be the same."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest

from gateway.access import gate as gate_module
from gateway.access.consent import Decision
from gateway.access.gate import Decided, Gate
from gateway.access.principal import Principal
from gateway.access.pseudonymise import Rename, plan, rename_references
from gateway.access.pseudonyms import Pseudonyms
from gateway.access.scopes import Scopes
from tests.access.corpus import MRN, B, resources

GENOTYPING = f"{B}/StructureDefinition/genotyping"
STORAGE = f"{B}/StructureDefinition/storage-location"
SUBJECT_SYSTEM = f"{B}/sid/subject"
COLLABORATOR = Principal("collaborator", "external", Scopes.parse("system/*.rs"))


def _genotyping() -> dict[str, Any]:
    return {"url": GENOTYPING, "extension": [{"url": "genotyped", "valueBoolean": True},
                                             {"url": "platform", "valueString": "MEGA"}]}


def variants() -> list[dict[str, Any]]:
    """Resources holding what the rules act on, in the places the walk and the element rules look."""
    base = next(r for r in resources() if r["resourceType"] == "Specimen")
    everything = copy.deepcopy(base) | {
        "collection": {"collector": {"reference": "Practitioner/p1"}, "bodySite": {"text": "left arm"}},
        "processing": [{"description": "spun at 4C", "extension": [_genotyping()]}, {"procedure": {"text": "x"}}],
        "request": [{"reference": "ServiceRequest/r1"}],
        "modifierExtension": [{"url": STORAGE, "valueString": "F9"}]}
    nested = copy.deepcopy(base) | {
        "container": [{"type": {"text": "cryovial"},
                       "extension": [_genotyping(), {"url": "other", "valueUri": GENOTYPING}]}],
        "subject": {"reference": "Patient/S01", "identifier": {"system": MRN, "value": "MGH-1"}}}
    only_text = {"resourceType": "ResearchSubject", "id": "rs-1", "status": "on-study",
                 "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">S01</div>"},
                 "individual": {"reference": "Patient/S01"}}
    nothing = {"resourceType": "ResearchSubject", "id": "rs-2", "status": "on-study",
               "study": {"reference": "ResearchStudy/TRC-2024-017"}, "individual": {"reference": "Patient/S02"},
               "extension": [{"url": "https://example.org/text", "valueString": "note"}]}
    kept_whole = {"resourceType": "Specimen", "id": "sp-kept", "status": "available",
                  "extension": [{"url": GENOTYPING, "extension": [{"url": "genotyped", "valueBoolean": True}]}],
                  "subject": {"reference": "Patient/S01"}, "collection": {"collectedDateTime": "2020-01-02"},
                  "processing": [{"procedure": {"coding": [{"code": "spin"}]}}]}
    null_note = {"resourceType": "Specimen", "id": "sp-null", "note": None, "type": {"text": "plasma"},
                 "subject": {"reference": "Patient/S02"}}
    patient = {"resourceType": "Patient", "id": "S03", "birthDate": "1950-02-03", "name": [{"family": "Doe"}],
               "identifier": [{"system": MRN, "value": "MGH-7"}, {"system": SUBJECT_SYSTEM, "value": "S03"}],
               "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                                      "code": "PSEUDED", "display": "pseudonymized"}]}}
    observation = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "HbA1c"},
                   "subject": {"reference": "Patient/S01"}, "performer": [{"reference": "Practitioner/p"}],
                   "note": [{"text": "called the patient"}], "encounter": {"reference": "Encounter/e"}}
    return [everything, nested, only_text, nothing, kept_whole, null_note, patient, observation]


def corpus() -> list[dict[str, Any]]:
    """The access corpus (but its cohort, which the gate checks against its members' consents) and the variants."""
    return [r for r in resources() if r["resourceType"] != "Group"] + variants()


class _Recorded:
    """A database that takes the pseudonyms recorded and answers nothing else."""

    dialect = "sqlite"

    class _Tx:
        async def executemany(self, sql: str, rows: object) -> None:
            return None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Recorded._Tx]:
        yield self._Tx()


class _NoStore:
    """The gate's store: never asked, every decision comes with its resource."""

    db = None


def _decided(resource: dict[str, Any], content: bytes, genetic: bool) -> Decided:
    permits = frozenset({"research", "external-sharing", *(("genetic",) if genetic else ())})
    subject = (resource.get("subject") or resource.get("individual") or resource.get("patient") or {})
    compartment = resource["id"] if resource["resourceType"] == "Patient" else \
        subject.get("reference", "Patient/S01").removeprefix("Patient/")
    decision = Decision(compartment, "C", "ACTIVE", permits, None, None, None)
    return Decided(resource["resourceType"], resource["id"], 1, 0, False, compartment, content, decision=decision)


def slow_copy(rtype: str, content: bytes, genetic: bool, rename: Rename | None, *, every_rule: bool = False) -> bytes:
    """The external copy the long way: parse, the full walk (no source: it never stops early), serialise.
    `every_rule`: with every rule of the type, not only those whose strings are in `content`."""
    rules = plan(rtype, None if every_rule else content, genetic_allowed=genetic, renaming=rename is not None)
    resource = orjson.loads(content)
    if not rules.apply(resource, rename):
        return content
    data = orjson.dumps(resource)
    return rename_references(data, rename) if rename is not None and rules.references else data


def _gate(pseudonyms: bool) -> Gate:
    names = Pseudonyms(b"s" * 40, _Recorded()) if pseudonyms else None  # type: ignore[arg-type]
    return Gate(frozenset({r["resourceType"] for r in corpus()}), _NoStore(), names)  # type: ignore[arg-type]


@pytest.mark.parametrize("pseudonyms", [False, True], ids=["codes", "own-pseudonyms"])
@pytest.mark.parametrize("genetic", [False, True], ids=["no-genetic", "genetic"])
async def test_the_gate_gives_what_the_full_walk_gives(genetic: bool, pseudonyms: bool) -> None:
    """Twice: the second time the copies made the first time (kept by the gate) leave."""
    gate = _gate(pseudonyms)
    items = [(r, orjson.dumps(r)) for r in corpus()]
    rename = gate.pseudonyms.renaming(COLLABORATOR.client_id) if gate.pseudonyms else None
    for _ in range(2):
        # Bytes equal to the stored ones but another object, as each read from the store gives.
        fast = await gate.disclose_many(COLLABORATOR, [_decided(r, bytes(bytearray(content)), genetic)
                                                       for r, content in items])
        for (resource, content), out in zip(items, fast, strict=True):
            expected = slow_copy(resource["resourceType"], content, genetic, rename)
            assert out == expected, resource["id"]
            if rename is None:
                assert out == slow_copy(resource["resourceType"], content, genetic, None, every_rule=True), \
                    resource["id"]


async def test_a_copy_kept_for_genetic_consent_never_leaves_without_it() -> None:
    """The same stored version for a subject who consented to genetic research, then (a withdrawal, or
    another subject's identical bytes) for one who did not: the second copy has no genotyping. And a new
    version is a new copy."""
    gate = _gate(False)
    specimen = variants()[0]
    content = orjson.dumps(specimen)
    with_genetic, without = [orjson.loads((await gate.disclose_many(COLLABORATOR, [_decided(specimen, content, g)]))[0])
                             for g in (True, False)]
    assert GENOTYPING in orjson.dumps(with_genetic).decode()
    assert GENOTYPING not in orjson.dumps(without).decode()
    assert {s["code"] for s in without["meta"]["security"]} == {"PSEUDED", "REDACTED"}
    changed = orjson.dumps(specimen | {"status": "unavailable"})
    assert orjson.loads((await gate.disclose_many(COLLABORATOR, [_decided(specimen, changed, False)]))[0])[
        "status"] == "unavailable"


async def test_kept_copies_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gate_module, "COPIES_KEPT", 3)
    gate = _gate(False)
    specimen = variants()[0]
    for n in range(10):
        version = orjson.dumps(specimen | {"id": f"sp-{n}"})
        out = (await gate.disclose_many(COLLABORATOR, [_decided(specimen, version, False)]))[0]
        assert out is not None and orjson.loads(out)["id"] == f"sp-{n}"
    assert len(gate._copies._made) == 3


async def test_removable_elements_present_are_removed_and_labelled() -> None:
    everything = variants()[0]
    out = (await _gate(False).disclose_many(COLLABORATOR, [_decided(everything, orjson.dumps(everything), True)]))[0]
    assert out is not None
    copy_ = orjson.loads(out)
    assert not {"text", "note", "request", "modifierExtension"} & copy_.keys()
    assert "collector" not in copy_["collection"] and copy_["collection"]["bodySite"] == {"text": "left arm"}
    assert "description" not in copy_["processing"][0]
    assert [e["url"] for e in copy_["processing"][0]["extension"]] == [GENOTYPING]
    assert {s["code"] for s in copy_["meta"]["security"]} == {"PSEUDED"}


async def test_every_occurrence_is_removed_and_a_value_that_is_no_extension_kept() -> None:
    """The walk stops early only once every occurrence of what it removes was in what it removed: here the
    genotyping URL is a removable extension at the top, another inside a container, and a value."""
    nested = variants()[1]
    content = orjson.dumps(nested)
    assert content.count(GENOTYPING.encode()) == 3
    out = (await _gate(False).disclose_many(COLLABORATOR, [_decided(nested, content, False)]))[0]
    assert out is not None
    copy_ = orjson.loads(out)
    assert "extension" not in copy_ or GENOTYPING not in {e["url"] for e in copy_["extension"]}
    assert copy_["container"][0]["extension"] == [{"url": "other", "valueUri": GENOTYPING}]
    assert "identifier" not in copy_["subject"] and MRN.encode() not in out
    assert {s["code"] for s in copy_["meta"]["security"]} == {"PSEUDED", "REDACTED"}


async def test_a_resource_nothing_applies_to_leaves_unparsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its plan finds no string of a rule acting anywhere and no removable element's key: the stored bytes
    themselves leave. In the ResearchSubject `text` and `note` are there as values, in the Specimen (genetic
    research permitted) `collection` and `processing` without what is removed from them."""
    kept = [variants()[3], variants()[4]]
    contents = [orjson.dumps(resource) for resource in kept]

    def refused(_data: bytes) -> Callable[..., Any]:
        raise AssertionError("parsed")

    monkeypatch.setattr(gate_module.orjson, "loads", refused)
    items = [_decided(resource, content, True) for resource, content in zip(kept, contents, strict=True)]
    out = await _gate(False).disclose_many(COLLABORATOR, items)
    assert all(body is content for body, content in zip(out, contents, strict=True))


def test_decisions_read_on_either_engine_are_the_same() -> None:
    """SQLite gives the permission columns as 0/1, PostgreSQL as booleans; the shared permission sets match."""
    sqlite = Decision.from_row(("S1", "C1", "ACTIVE", 1, 0, 0, 1, 1, 0, None, None, None))
    postgres = Decision.from_row(("S1", "C1", "ACTIVE", True, False, False, True, True, False, None, None, None))
    assert sqlite == postgres
    assert sqlite.permits == frozenset({"research", "recontact", "external-sharing"})
    assert Decision.from_row(("S2", "C2", "EXPIRED", 0, 0, 0, 0, 0, 0, None, None, None)).permits == frozenset()
