"""Statements kept by query shape (gateway/search/shapes.py): a search of a shape seen before is given the
statement written for it — text kept, parameters filled in from its own values — and that statement is the one
the compiler writes for it, for every kind of value, restriction and page; what a statement's text or a
computed parameter depends on is never taken from another search. Pure statement writing: no database.

The verification the test suite turns on (`KeptStatements.verify`) is off here, so that each test sees what
production sees; each compares with the statement written anew itself."""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qsl, urlsplit

import pytest

from gateway.access.gate import Restriction
from gateway.search import gated, shapes, sql, statement
from gateway.search.engine import SearchEngine
from gateway.search.query import Query
from gateway.search.sql import Sql
from gateway.served import STORED_TYPES
from tests.access.corpus import MRN

from .test_parameters import CASES

EVERYTHING = Restriction(frozenset(STORED_TYPES))
COLLABORATOR = Restriction(frozenset(STORED_TYPES), consent=frozenset({"research"}), at_us=1_700_000_000_000_000,
                           hidden_systems=frozenset({MRN}))
SCT = "http://snomed.info/sct"

# Pairs of searches of one shape with different values: the second is given the first's kept statement.
SAME_SHAPE = [
    (f"Specimen?status=available&type={SCT}|119361006", f"Specimen?status=unavailable&type={SCT}|258566005"),
    ("Specimen?identifier=urn:sp|X1&status=available,unavailable",
     "Specimen?identifier=urn:sp|Y22&status=entered-in-error,available"),
    ("Specimen?subject:Patient.identifier=urn:mrn|M1", "Specimen?subject:Patient.identifier=urn:mrn|M77"),
    ("ResearchSubject?study.identifier=urn:study|TRC-1", "ResearchSubject?study.identifier=urn:study|TRC-2"),
    ("Specimen?collected=ge2014-03-01&collected=lt2014-04-01&genotyped=true",
     "Specimen?collected=ge2019-11-01&collected=lt2020-01-01&genotyped=false"),
    ("Specimen?subject=Patient/S1&_include=Specimen:subject", "Specimen?subject=Patient/S2&_include=Specimen:subject"),
    ("Specimen?_id=a,b", "Specimen?_id=c,d"),
    ("Specimen?_lastUpdated=gt2020-01-01", "Specimen?_lastUpdated=gt2024-05-05T10:00:00Z"),
    ("Patient?_has:Consent:patient:status=active", "Patient?_has:Consent:patient:status=inactive"),
    ("Specimen?status=available&_sort=-collected,_id", "Specimen?status=unavailable&_sort=-collected,_id"),
    ("Specimen?subject.gender=female&type=x", "Specimen?subject.gender=male&type=y"),
    ("Specimen?subject=https://other.org/fhir/Patient/1", "Specimen?subject=https://other.org/fhir/Patient/2"),
    ("Specimen?_profile:above=a", "Specimen?_profile:above=http://x.org/a/b"),  # one condition per prefix
    ("Specimen?_profile=http://x.org/a", "Specimen?_profile=http://y.org/b"),
]
# Searches whose statement depends on more than the shape: their parameters are computed from the values.
COMPUTED = [
    ("Patient?name=ann", "Patient?name=bob"),  # starts-with: an upper bound computed from the text
    ("Patient?name:contains=nn", "Patient?name:contains=ob"),  # a LIKE pattern
    ("Specimen?collected=ap2015-03-05", "Specimen?collected=ap2016-03-05"),  # a slack computed from now
]


class _Store:
    def __init__(self, dialect: str) -> None:
        self.dialect = dialect


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> SearchEngine:
    monkeypatch.setattr(shapes.KeptStatements, "verify", False)
    return SearchEngine(_Store(request.param))  # type: ignore[arg-type]


def _query(engine: SearchEngine, search: str) -> Query:
    parts = urlsplit(search)
    return engine.parse(parts.path, parse_qsl(parts.query), strict=True)


def _writers(engine: SearchEngine) -> dict[str, shapes.Build]:
    """Both statements the engine keeps: the gated page and the page for given probes."""
    dialect = engine.store.dialect
    return {
        "gated": lambda qs, r: gated.statement(qs, r, None, 21, dialect),
        "page": lambda qs, r: statement.page_statement(qs, r, [frozenset({0})], None, 21, dialect),
    }


def _params(sql: Sql | None) -> list[tuple[type, object]] | None:
    return None if sql is None else [(type(p), p) for p in sql.params]


@pytest.mark.parametrize("restriction", [EVERYTHING, COLLABORATOR], ids=["internal", "collaborator"])
@pytest.mark.parametrize(("first", "second"), SAME_SHAPE)
def test_a_search_of_a_known_shape_gets_the_statement_written_for_its_own_values(
        engine: SearchEngine, restriction: Restriction, first: str, second: str) -> None:
    for purpose, build in _writers(engine).items():
        kept = shapes.KeptStatements()
        a, b = _query(engine, first), _query(engine, second)
        assert _params(kept.statement((purpose,), [a], restriction, build)) == _params(build([a], restriction))
        given = kept.statement((purpose,), [b], restriction, build)
        written = build([b], restriction)
        assert (given is None) == (written is None), (purpose, second)
        if written is not None:
            assert given is not None and given.text == written.text, (purpose, second)
            assert _params(given) == _params(written), (purpose, second)
            assert _params(given) != _params(build([a], restriction)), "the values differ, so must the parameters"


@pytest.mark.parametrize(("first", "second"), COMPUTED)
def test_parameters_computed_from_values_are_computed_for_each_search(
        engine: SearchEngine, first: str, second: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sql, "now_us", lambda: 1_700_000_000_000_000)  # `ap`: both written at one instant
    build = _writers(engine)["page"]
    kept = shapes.KeptStatements()
    kept.statement(("page",), [_query(engine, first)], EVERYTHING, build)
    b = _query(engine, second)
    assert _params(kept.statement(("page",), [b], EVERYTHING, build)) == _params(build([b], EVERYTHING))


def test_the_instant_of_a_collaborators_consent_is_each_requests_own(engine: SearchEngine) -> None:
    """A collaborator's restriction holds the instant consent is judged at (now, per request): a statement kept
    from an earlier request must not judge consent at that request's instant."""
    build = _writers(engine)["page"]
    kept = shapes.KeptStatements()
    query = _query(engine, "Specimen?status=available")
    earlier = kept.statement(("page",), [query], COLLABORATOR, build)
    later_restriction = dataclasses.replace(COLLABORATOR, at_us=COLLABORATOR.at_us + 86_400_000_000)
    later = kept.statement(("page",), [query], later_restriction, build)
    assert earlier is not None and COLLABORATOR.at_us in earlier.params
    assert later is not None and COLLABORATOR.at_us not in later.params and later_restriction.at_us in later.params
    assert _params(later) == _params(build([query], later_restriction))


def test_a_hidden_identifier_system_is_never_given_a_statement_kept_for_another_system(engine: SearchEngine) -> None:
    """The MRN rows an external principal must not match on are excluded only where a value could match them:
    a search naming the MRN system is not the shape of one naming another system."""
    build = _writers(engine)["page"]
    kept = shapes.KeptStatements()
    mrn = _query(engine, f"Patient?identifier={MRN}|MGH-1")
    kept.statement(("page",), [_query(engine, "Patient?identifier=urn:sp|X1")], COLLABORATOR, build)
    given = kept.statement(("page",), [mrn], COLLABORATOR, build)
    assert given is not None and "NOT IN (" in given.text
    assert _params(given) == _params(build([mrn], COLLABORATOR))


def test_restrictions_are_shapes_of_their_own(engine: SearchEngine) -> None:
    build = _writers(engine)["page"]
    kept = shapes.KeptStatements()
    query = _query(engine, "Specimen?status=available")
    kept.statement(("page",), [query], EVERYTHING, build)
    narrower = Restriction(frozenset({"Specimen"}), confined=frozenset({"Specimen"}), compartments=frozenset({"P1"}))
    assert _params(kept.statement(("page",), [query], narrower, build)) == _params(build([query], narrower))


@pytest.mark.parametrize("restriction", [EVERYTHING, COLLABORATOR], ids=["internal", "collaborator"])
def test_every_search_of_the_parameter_corpus_gets_its_own_statement(
        engine: SearchEngine, restriction: Restriction, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hand-written corpus of every parameter type, modifier and prefix (test_parameters.CASES), in both
    orders: each search of a shape met before is given the statement written for its own values."""
    monkeypatch.setattr(sql, "now_us", lambda: 1_700_000_000_000_000)  # `ap`: written at one instant
    queries = [_query(engine, case) for case, _ in CASES]
    for purpose, build in _writers(engine).items():
        for ordered in (queries, queries[::-1]):
            kept = shapes.KeptStatements()
            for query in ordered:
                given = kept.statement((purpose,), [query], restriction, build)
                assert _params(given) == _params(build([query], restriction)), (purpose, query)
                assert given is None or given.text == build([query], restriction).text  # type: ignore[union-attr]


def test_kept_statements_are_bounded(engine: SearchEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shapes, "KEPT", 3)
    build = _writers(engine)["page"]
    kept = shapes.KeptStatements()
    for count in range(1, 10):
        query = _query(engine, f"Specimen?status=available&_count={count}")
        assert _params(kept.statement(("page",), [query], EVERYTHING, build)) == _params(build([query], EVERYTHING))
        assert len(kept._kept) <= 3
