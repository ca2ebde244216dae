"""An external principal's criteria never match index rows of a hidden identifier system (the MRN): the
condition that excludes them is written wherever such a row could match, and left out where every value
names another system (`system|code`, `|code`), which no MRN row can match (both engines)."""

from __future__ import annotations

import pytest

from gateway.access.gate import Restriction
from gateway.served import STORED_TYPES
from tests.access.corpus import MRN

from .conftest import Gateway

HIDDEN = Restriction(frozenset(STORED_TYPES), hidden_systems=frozenset({MRN}))


async def _statement(gw: Gateway, type_: str, params: list[tuple[str, str]]) -> str:
    engine = gw.app.state.services.search
    query = engine.parse(type_, params, strict=True)
    return (await engine.page_statement([query], HIDDEN, query.count + 1)).sql.text


@pytest.mark.parametrize(("params", "excluded"), [
    ([("identifier", f"{MRN}|MGH-7000000")], True),  # names the hidden system
    ([("identifier", "MGH-7000000")], True),  # any system: MRN rows could match
    ([("identifier", f"urn:other|X,{MRN}|MGH-7000000")], True),  # one alternative names it
    ([("identifier:not", "MGH-7000000")], True),
    ([("identifier:missing", "true")], True),  # any row counts: an MRN alone must not
    ([("identifier:text", "MGH")], True),
    ([("subject:identifier", "MGH-7000000")], True),
    ([("identifier", "https://biobank.massgeneral.org/fhir/sid/specimen|BB-1")], False),
    ([("identifier", "|BB-1")], False),  # no system: MRN rows have one
    ([("type", "http://snomed.info/sct|119361006"), ("identifier:not", "urn:x|1")], False),
    ([("subject:identifier", "https://biobank.massgeneral.org/fhir/sid/subject|S01")], False),
])
async def test_rows_of_a_hidden_system_are_excluded_wherever_they_could_match(
        gw: Gateway, params: list[tuple[str, str]], excluded: bool) -> None:
    text = await _statement(gw, "Specimen", params)
    assert ("system NOT IN (" in text) is excluded, text


@pytest.mark.parametrize("params", [
    [("identifier", "urn:mrn|M1,urn:mrn|M3")],
    [("identifier", "urn:mrn|M2,|M1")],
    [("identifier:not", "urn:mrn|M1")],
])
async def test_left_out_it_changes_no_answer(gw: Gateway, params: list[tuple[str, str]]) -> None:
    """The values' own systems are the only ones they can match: the same patients with the condition or not."""
    engine = gw.app.state.services.search
    hidden = await engine.search("Patient", params, HIDDEN)
    everything = await engine.search("Patient", params, Restriction(frozenset(STORED_TYPES)))
    assert [m.id for m in hidden.matches] == [m.id for m in everything.matches] != []
