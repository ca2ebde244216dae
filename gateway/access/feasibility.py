"""Feasibility counts (`$biobank-availability`): how many available specimens match, grouped as
asked, with small cells suppressed so that no count can single out a participant.

Counting runs on the search index tables and `consent_state` in SQL; only (specimen id,
dimension value) pairs come back, never a resource. Suppression: a cell below the threshold
is shown as `<threshold`; if that would leave a single hidden cell (or hidden cells whose sum
is below the threshold), further smallest cells are hidden too, so a hidden cell cannot be
recovered as the total minus the shown ones (complementary suppression). The total is
hidden when it is itself below the threshold.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.access.consent import sharing_clause
from gateway.access.gate import Restriction

SNOMED = "http://snomed.info/sct"
MIABIS = "https://fhir.bbmri-eric.eu/fhir/CodeSystem/miabis-storage-temperature-cs"
DIMENSIONS = ("specimen-type", "genotyped", "study", "storage-temperature")
_TOKEN_DIMENSIONS = {"specimen-type": ("type", SNOMED), "genotyped": ("genotyped", None),
                     "storage-temperature": ("storage-temperature", MIABIS)}


@dataclass(frozen=True)
class Question:
    specimen_types: tuple[str, ...] = ()
    genotyped: bool | None = None
    consented_for: frozenset[str] = frozenset()
    studies: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()


@dataclass
class Cell:
    key: tuple[str, ...]
    count: int
    suppressed: bool = False


@dataclass
class Answer:
    cells: list[Cell]
    total: Cell
    threshold: int
    dimensions: tuple[str, ...] = field(default_factory=tuple)


def _token_filter(param: str, values: Sequence[str]) -> tuple[str, list[Any]]:
    ors, params = [], []
    for value in values:
        system, sep, code = value.rpartition("|")
        if sep and system:
            ors.append("(code = ? AND system = ?)")
            params += [code, system]
        else:
            ors.append("code = ?")
            params.append(code)
    return (f"r.id IN (SELECT id FROM search_token WHERE type = 'Specimen' AND param = ? AND ({' OR '.join(ors)}))",
            [param, *params])


def _study_subjects_sql(studies: Sequence[str]) -> tuple[str, list[Any]]:
    marks = ", ".join("?" * len(studies))
    return (
        "SELECT rs.compartment, st.code FROM resources rs "
        "JOIN search_reference ref ON ref.type = 'ResearchSubject' AND ref.param = 'study' AND ref.id = rs.id "
        "JOIN search_token st ON st.type = 'ResearchStudy' AND st.param = 'identifier' AND st.id = ref.ref_id "
        "WHERE rs.type = 'ResearchSubject' AND rs.deleted = ?"
        + (f" AND st.code IN ({marks})" if studies else ""),
        [False, *studies],
    )


async def count(db: Any, question: Question, restriction: Restriction, now_us: int) -> Counter[tuple[str, ...]]:
    """Specimen counts per combination of the grouped dimensions (one key `()` without grouping)."""
    where = ["r.type = 'Specimen'", "r.deleted = ?",
             "r.id IN (SELECT id FROM search_token WHERE type = 'Specimen' AND param = 'status' AND code = ?)"]
    params: list[Any] = [False, "available"]
    if question.specimen_types:
        clause, p = _token_filter("type", question.specimen_types)
        where.append(clause)
        params += p
    if question.genotyped is not None:
        clause, p = _token_filter("genotyped", ["true" if question.genotyped else "false"])
        where.append(clause)
        params += p
    if question.consented_for:
        clause, p = sharing_clause(question.consented_for, now_us, "r.compartment")
        where.append(clause)
        params += p
    consent = restriction.consent_sql("r.compartment")
    if consent:
        where.append(consent[0])
        params += consent[1]
    confined = restriction.compartment_filter("Specimen")
    if confined is not None:
        marks = ", ".join("?" * len(confined)) or "NULL"
        where.append(f"r.compartment IN ({marks})")
        params += sorted(confined)
    studies: dict[str, set[str]] = {}
    if question.studies or "study" in question.group_by:
        sql, p = _study_subjects_sql(question.studies)
        for compartment, study in await db.fetchall(sql, p):
            studies.setdefault(compartment, set()).add(study)
    rows = await db.fetchall(f"SELECT r.id, r.compartment FROM resources r WHERE {' AND '.join(where)}", params)
    if question.studies:
        rows = [r for r in rows if r[1] in studies]
    values: dict[str, dict[str, str]] = {}
    for dim in question.group_by:
        if dim in _TOKEN_DIMENSIONS:
            param, system = _TOKEN_DIMENSIONS[dim]
            sql = "SELECT id, code FROM search_token WHERE type = 'Specimen' AND param = ?"
            args = [param, system] if system else [param]
            found = await db.fetchall(sql + (" AND system = ?" if system else ""), args)
            values[dim] = dict(found)
    counts: Counter[tuple[str, ...]] = Counter()
    for specimen_id, compartment in rows:
        keys: list[tuple[str, ...]] = [()]
        for dim in question.group_by:
            if dim == "study":
                options = sorted(studies.get(compartment, ())) or ["none"]
            else:
                options = [values[dim].get(specimen_id, "unknown")]
            keys = [(*k, o) for k in keys for o in options]
        counts.update(keys)
    return counts


def suppress(counts: Counter[tuple[str, ...]], threshold: int, total: int) -> tuple[list[Cell], Cell]:
    """Cells with primary and complementary suppression, and the total cell."""
    cells = [Cell(key, n) for key, n in sorted(counts.items())]
    for cell in cells:
        cell.suppressed = 0 < cell.count < threshold
    hidden = [c for c in cells if c.suppressed]
    shown = sorted((c for c in cells if not c.suppressed and c.count > 0), key=lambda c: c.count)
    while hidden and (len(hidden) < 2 or sum(c.count for c in hidden) < threshold) and shown:
        extra = shown.pop(0)
        extra.suppressed = True
        hidden.append(extra)
    return cells, Cell((), total, 0 < total < threshold)


async def availability(db: Any, question: Question, restriction: Restriction, now_us: int,
                       threshold: int) -> Answer:
    counts = await count(db, question, restriction, now_us)
    if question.group_by and "study" in question.group_by:
        total = await _distinct_total(db, question, restriction, now_us)
    else:
        total = sum(counts.values())
    cells, total_cell = suppress(counts, threshold, total)
    return Answer(cells, total_cell, threshold, question.group_by)


async def _distinct_total(db: Any, question: Question, restriction: Restriction, now_us: int) -> int:
    """A specimen of a subject in two studies counts once in the total (it is in two study cells)."""
    ungrouped = Question(question.specimen_types, question.genotyped, question.consented_for, question.studies, ())
    return sum((await count(db, ungrouped, restriction, now_us)).values())
