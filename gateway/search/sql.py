"""Compiling a parsed search into SQL over `resources` and the index tables, with the access
restriction inside it.

Hand-written SQL with `?` placeholders (the store renumbers them for asyncpg), composed from
small fragments: each criterion is `alias.id IN (SELECT id FROM search_<type> ...)`, which
both engines answer from the `(type, param, value..., id)` indexes (criteria with many rows — on
SQLite plain criteria, on PostgreSQL chains — become per-resource `EXISTS` probes instead; see probe.py).
Chains and `_has` nest the same shape over `search_reference`, and every nested `resources` scan carries the
principal's restriction, so matches, chain targets, `_has` sources, includes and counts are
all filtered by the database — nothing is counted or joined that the principal may not see.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.access.consent import DECISION_WIDTH, Decision, decision_columns
from gateway.access.gate import Decided, Restriction
from gateway.fhir.errors import FhirError
from gateway.fhir.instant import now_us
from gateway.observability import metrics
from gateway.search.query import Chain, Clause, Criterion, Has, Missing, Range, Ref, SortKey, Text, Token
from gateway.search.values import HIGHEST, LOWEST
from gateway.store import StoredResource
from gateway.store.database import Database, Row, one_of

RESOURCE_COLUMNS = ("type", "id", "version", "ts", "deleted", "compartment", "content")
_SORT_COLUMN = {"token": "code", "string": "value", "reference": "ref_id", "quantity": "value", "number": "value",
                "uri": "value"}
_SENTINEL: dict[str, tuple[Any, Any]] = {
    "date": (HIGHEST + 1, LOWEST - 1), "quantity": (1e308, -1e308), "number": (1e308, -1e308),
}
"""Stand-ins for a missing sort value (ascending, descending) so resources without one sort last."""
_TEXT_SENTINEL = ("\U0010ffff", "")


@dataclass(slots=True)
class Sql:
    text: str
    params: list[Any] = field(default_factory=list)


def all_of(parts: Iterable[Sql]) -> Sql:
    items = [p for p in parts if p.text != "1 = 1"]
    if not items:
        return Sql("1 = 1")
    return Sql(" AND ".join(f"({p.text})" if " OR " in p.text else p.text for p in items),
               [x for p in items for x in p.params])


def any_of(parts: Sequence[Sql]) -> Sql:
    if not parts:
        return Sql("1 = 0")
    return Sql("(" + " OR ".join(f"({p.text})" for p in parts) + ")", [x for p in parts for x in p.params])


async def fetch(db: Database, sql: str, params: Sequence[Any]) -> list[Row]:
    """Run a search statement. On PostgreSQL the pool plans every statement for its values
    (`plan_cache_mode = force_custom_plan`, gateway/store/database.py): a generic plan cannot
    see that `status=available` matches 70% of specimens and `identifier=X` one."""
    started = time.perf_counter()
    rows = await db.fetchall(sql, params)
    metrics.store_latency("search", time.perf_counter() - started)
    return rows


async def fetch_generic(db: Database, sql: str, params: Sequence[Any]) -> list[Row]:
    """Run a statement whose best plan is the same whatever its values: resources reached by id or by
    reference from the ids of a page (includes), counts bounded by a LIMIT (probe.py), a page of a few
    counted ids or walked in id order (probe.Counted.generic), a page that decides its plan itself (gated.py).
    On PostgreSQL it goes to the point pool, whose connections plan a prepared statement once (`plan_cache_mode
    = force_generic_plan`): planned at each run, an include's statement cost 400 us of backend CPU, a chain's
    count 267 us, a page of one patient's specimens by a chain 433 us; with their generic plans 100, 67 and
    100 us. Id lists are one array parameter (`any_value`), so the statement's text, and with it the cached
    plan, does not change with the number of ids."""
    started = time.perf_counter()
    rows = await db.fetch_points(sql, params)
    metrics.store_latency("search", time.perf_counter() - started)
    return rows


def any_value(dialect: str, column: str, values: Sequence[Any]) -> Sql:
    """`column` is one of `values`: one array parameter on PostgreSQL (one statement text for any number of
    values, see fetch_generic), a list of placeholders on SQLite (which has no arrays)."""
    return Sql(*one_of(dialect, column, values))


def columns(alias: str, restriction: Restriction) -> str:
    """What a statement selects first of the `resources` rows (as `alias`) it returns, for `stored`: the
    resource columns and, for a principal restricted by consent, the decision of the resource's subject
    (joined by `decision_join`), which the egress gate then takes from the row (gate.Decided) instead of
    looking the page's subjects up in a statement of its own."""
    own = ", ".join(f"{alias}.{c}" for c in RESOURCE_COLUMNS)
    return f"{own}, {decision_columns(alias + '_d')}" if restriction.consent else own


def decision_join(alias: str, restriction: Restriction) -> str:
    """The outer join `columns` reads a subject's decision from, which the consent condition of the same
    statement then reads too (`live(..., decided=True)`): written on the joined row rather than as a lookup
    of its own, it can only be checked once the row is joined, so PostgreSQL checks it after the criteria.
    As a lookup of its own it came first (PostgreSQL orders a scan's conditions by cost): for a collaborator
    a page of `Specimen?status=..&type=..` looked up the subject of each of the 234 specimens it walked
    (0.40 ms of execution, now 0.12 ms), a page of 11 enrolments of one study those of 107 (now 11)."""
    if not restriction.consent:
        return ""
    return f" LEFT JOIN consent_state {alias}_d ON {alias}_d.patient = {alias}.compartment"


def width(restriction: Restriction) -> int:
    """How many columns `columns` selects (what comes after them: sort keys, see statement.boundary)."""
    return len(RESOURCE_COLUMNS) + (DECISION_WIDTH if restriction.consent else 0)


def stored(row: Row, restriction: Restriction) -> StoredResource:
    """A row that starts with `columns(alias, restriction)` as the store's StoredResource — a gate.Decided,
    carrying its subject's decision, when the restriction has a consent condition."""
    if restriction.consent:
        return Decided(row[0], row[1], row[2], row[3], bool(row[4]), row[5], bytes(row[6]),
                       decision=Decision.from_columns(row, len(RESOURCE_COLUMNS)))
    return StoredResource(row[0], row[1], row[2], row[3], bool(row[4]), row[5], bytes(row[6]))


def marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def insufficient_scope(type_: str, how: str) -> FhirError:
    """403 for a search that names a type the principal may not read (its scopes, not the data, decide)."""
    return FhirError.of(403, "forbidden", f"insufficient_scope: the token's scopes do not allow reading {type_}, "
                        f"so it cannot be used in {how}",
                        headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'})


def visible(restriction: Restriction, alias: str, type_: str | None = None, decided: bool = False) -> Sql:
    """THE translation of a Restriction into SQL: which `resources` rows (as `alias`) the principal may see.

    Every query of search goes through here — matches, chain targets, `_has` sources,
    includes, revincludes, totals — so a new rule is one more condition in this function:
    scope (type), `patient/` compartment, and the consent predicate of external principals. `type_` known: a condition
    for that type; None: a condition over `alias.type` (wildcard revincludes). `decided`: the statement joins
    the subject's decision (`decision_join`), and the consent predicate is written on that row.
    """
    consent = restriction.consent_sql(f"{alias}.compartment", f"{alias}_d" if decided else None)
    consented = Sql(*consent) if consent else Sql("1 = 1")
    patients = sorted(restriction.compartments)
    in_compartment = Sql(f"{alias}.compartment IN ({marks(patients)})", patients) if patients else Sql("1 = 0")
    if type_ is not None:
        if type_ not in restriction.readable:
            return Sql("1 = 0")
        return all_of([in_compartment if type_ in restriction.confined else Sql("1 = 1"), consented])
    free = sorted(restriction.readable - restriction.confined)
    confined = sorted(restriction.confined)
    options = []
    if free:
        options.append(Sql(f"{alias}.type IN ({marks(free)})", free))
    if confined:
        options.append(all_of([Sql(f"{alias}.type IN ({marks(confined)})", confined), in_compartment]))
    return all_of([any_of(options), consented])


def live(alias: str, type_: str, restriction: Restriction, decided: bool = False) -> Sql:
    """`alias` is a current, undeleted `type_` resource the principal may see (`decided`: see `visible`)."""
    own = Sql(f"{alias}.type = ? AND {alias}.deleted = ?", [type_, False])
    return all_of([own, visible(restriction, alias, type_, decided)])


def _range(prefix: str, lo_col: str, hi_col: str, a: float, b: float) -> Sql:
    """Date ranges (search.html#prefix): the resource's [lo, hi] against the search value's [a, b]."""
    if prefix == "ap":
        slack = max(abs(now_us() - a) // 10, b - a)
        return Sql(f"{lo_col} <= ? AND {hi_col} >= ?", [int(b + slack), int(a - slack)])
    text, params = {
        "eq": (f"{lo_col} >= ? AND {hi_col} <= ?", [a, b]),
        "ne": (f"NOT ({lo_col} >= ? AND {hi_col} <= ?)", [a, b]),
        "gt": (f"{hi_col} > ?", [b]), "lt": (f"{lo_col} < ?", [a]),
        "ge": (f"{hi_col} >= ?", [a]), "le": (f"{lo_col} <= ?", [b]),
        "sa": (f"{lo_col} > ?", [b]), "eb": (f"{hi_col} < ?", [a]),
    }[prefix]
    return Sql(text, [int(p) for p in params])


def _number(value: Range, column: str) -> Sql:
    """Numbers: `eq` honours the precision written (1.5 matches [1.45, 1.55)); the others compare exactly."""
    v = value.value
    if value.prefix == "ap":
        slack = abs(v) / 10
        return Sql(f"{column} >= ? AND {column} <= ?", [v - slack, v + slack])
    text, params = {
        "eq": (f"{column} >= ? AND {column} < ?", [value.lo, value.hi]),
        "ne": (f"NOT ({column} >= ? AND {column} < ?)", [value.lo, value.hi]),
        "gt": (f"{column} > ?", [v]), "lt": (f"{column} < ?", [v]), "ge": (f"{column} >= ?", [v]),
        "le": (f"{column} <= ?", [v]), "sa": (f"{column} > ?", [v]), "eb": (f"{column} < ?", [v]),
    }[value.prefix]
    return Sql(text, [float(p) for p in params])


def _like(pattern: str) -> str:
    return pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _token(t: str, value: Token, system: str = "system", code: str = "code") -> Sql:
    parts = []
    if value.system is not None:
        parts.append(Sql(f"{t}.{system} = ?", [value.system]))
    if value.code is not None:
        parts.append(Sql(f"{t}.{code} = ?", [value.code]))
    return all_of(parts)


def _value(kind: str, modifier: str, t: str, value: Any) -> Sql:
    """The condition one value puts on one index row `t`."""
    if kind == "token":
        if isinstance(value, Text):
            return Sql(f"{t}.text LIKE ? ESCAPE '\\'", [f"%{_like(value.text)}%"])
        return _token(t, value)
    if kind == "string":
        if modifier == "exact":
            return Sql(f"{t}.exact = ?", [value.text])
        if modifier == "contains":
            return Sql(f"{t}.value LIKE ? ESCAPE '\\'", [f"%{_like(value.text)}%"])
        upper = value.text[:-1] + chr(ord(value.text[-1]) + 1)
        return Sql(f"{t}.value >= ? AND {t}.value < ?", [value.text, upper])
    if kind == "uri":
        if modifier == "below":
            return Sql(f"{t}.value LIKE ? ESCAPE '\\'", [_like(value.text) + "%"])
        if modifier == "above":
            parts = value.text.split("/")
            prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
            return Sql(f"{t}.value IN ({marks(prefixes)})", prefixes)
        return Sql(f"{t}.value = ?", [value.text])
    if kind == "date":
        return _range(value.prefix, f"{t}.lo", f"{t}.hi", value.lo, value.hi)
    if kind == "number":
        return _number(value, f"{t}.value")
    if kind == "quantity":
        unit = []
        if value.system is not None:
            unit.append(Sql(f"{t}.system = ?", [value.system]))
        if value.code is not None:
            unit.append(Sql(f"{t}.code = ?", [value.code]) if value.system is not None
                        else Sql(f"({t}.code = ? OR {t}.unit = ?)", [value.code, value.code]))
        return all_of([_number(value, f"{t}.value"), *unit])
    if isinstance(value, Token):  # reference:identifier
        return _token(t, value, "ident_system", "ident_value")
    assert isinstance(value, Ref)
    if value.url is not None:
        return Sql(f"{t}.url = ?", [value.url])
    if value.type is not None:
        return Sql(f"{t}.ref_id = ? AND {t}.ref_type = ?", [value.id, value.type])
    return Sql(f"{t}.ref_id = ?", [value.id])


@dataclass(frozen=True, slots=True)
class Rows:
    """The index rows a criterion matches, `SELECT {id} FROM {source} WHERE {where}`, where `id` is the
    id of the resource they make a match."""

    source: str
    id: str
    where: Sql

    def select(self) -> Sql:
        return Sql(f"SELECT {self.id} FROM {self.source} WHERE {self.where.text}", self.where.params)


_CORRELATED = {"postgresql": " OFFSET 0", "sqlite": ""}
"""What keeps a probe a probe: PostgreSQL turns an `EXISTS` into a semi-join (and may then collect and sort
every match, the plan a probe is there to avoid) unless its subquery has an OFFSET; SQLite never does."""


def _systems_named(c: Clause, hidden: frozenset[str]) -> bool:
    """Whether every value of `c` names the identifier system of the rows it matches (`system|code`, or `|code`:
    none), none of them `hidden`: then no row of a hidden system can match, and the condition excluding them
    is left out (on PostgreSQL it cost ~50 us of planning and running per criterion of an external principal's
    statement). `:not` excludes exactly the rows the values match, so it is the same."""
    if c.modifier not in ("", "not", "identifier") or (c.param.kind == "reference" and c.modifier != "identifier"):
        return False
    return all(isinstance(v, Token) and v.system is not None and v.system not in hidden for v in c.values)


class Compiler:
    """Criteria -> SQL conditions on a `resources` alias; fresh aliases for every nested scan.

    A criterion is an id list, `alias.id IN (SELECT id FROM <its index rows>)`, or — where probe.py
    decided so from the data — a probe, `EXISTS (<its index rows> AND id = alias.id)`, checked for each
    resource of a walk in page order. A chain through, or a `_has` from, a type the principal may not
    read is refused (403 insufficient_scope), never answered as "no match": an empty answer would still
    tell whether such resources exist (the `Patient?_has:Consent:patient:status=inactive` side door). A
    chain whose target type is implicit reaches only the readable targets; if none is readable it is
    refused too. Readable targets are scanned with `live()`, so confined and consent-restricted
    resources cannot satisfy a chain or a `_has` either.
    """

    def __init__(self, restriction: Restriction, dialect: str = "sqlite") -> None:
        self.restriction = restriction
        self.dialect = dialect
        """How a probe is written (`_CORRELATED`); everything else is the same SQL on both engines."""
        self._n = 0

    def alias(self, letter: str) -> str:
        self._n += 1
        return f"{letter}{self._n}"

    def criteria(self, criteria: Sequence[Criterion], alias: str, probed: frozenset[int] = frozenset()) -> Sql:
        """All criteria (AND). Those whose positions are in `probed` become correlated EXISTS probes
        instead of id lists (see gateway/search/probe.py)."""
        return all_of(self.criterion(c, alias, i in probed) for i, c in enumerate(criteria))

    def criterion(self, c: Criterion, alias: str, probe: bool = False) -> Sql:
        if isinstance(c, Clause) and (c.param.column is not None or c.modifier in ("missing", "not")):
            return self._special(c, alias)
        rows = self.rows(c, probe)
        if probe:
            return Sql(f"EXISTS (SELECT 1 FROM {rows.source} WHERE {rows.where.text} AND {rows.id} = {alias}.id"
                       f"{_CORRELATED[self.dialect]})", rows.where.params)
        select = rows.select()
        return Sql(f"{alias}.id IN ({select.text})", select.params)

    def together(self, clauses: Sequence[Clause], alias: str) -> Sql:
        """Clauses on one parameter, each held by some index row of `alias` (the range of a date range query
        walked in id order, statement.driven): one look at `alias`'s rows of that parameter instead of a probe
        per clause. Measured on PostgreSQL, a page of one month of one year: 1.0 -> 0.7 ms of backend CPU, the
        walk's ~280 specimens probed once instead of twice. No row at all gives NULL (no match), as EXISTS would."""
        rows = self._index_rows(clauses[0], values=False)
        held = [self._values(c, rows.id.removesuffix(".id")) for c in clauses]
        some_row = "bool_or" if self.dialect == "postgresql" else "MAX"
        return Sql(f"(SELECT {' AND '.join(f'{some_row}({h.text})' for h in held)} FROM {rows.source} "
                   f"WHERE {rows.where.text} AND {rows.id} = {alias}.id)",
                   [*(x for h in held for x in h.params), *rows.where.params])

    def rows(self, c: Criterion, probe: bool = False) -> Rows:
        """The index rows `c` matches (a clause on a `resources` column, `:missing` or `:not` has none);
        `probe`: they are looked up for one resource at a time (see `_chain`)."""
        if isinstance(c, Clause):
            return self._index_rows(c)
        if isinstance(c, Chain):
            return self._chain(c, probe)
        return self._has(c)

    def _index_rows(self, c: Clause, values: bool = True) -> Rows:
        """The rows of `c`'s parameter, those matching one of its values (`values`) or all of them —
        never the rows of an identifier system the principal may not see (Restriction.hidden_systems)."""
        t = self.alias("t")
        where = Sql(f"{t}.type = ? AND {t}.param = ?", [c.param.type_name, c.param.code])
        hidden = sorted(self.restriction.hidden_systems)
        system = {"token": "system", "reference": "ident_system"}.get(c.param.kind)
        if hidden and system and not (values and _systems_named(c, self.restriction.hidden_systems)):
            where = all_of([where, Sql(f"({t}.{system} IS NULL OR {t}.{system} NOT IN ({marks(hidden)}))", hidden)])
        return Rows(f"search_{c.param.kind} {t}", f"{t}.id", all_of([where, self._values(c, t)]) if values else where)

    def _values(self, c: Clause, t: str) -> Sql:
        kind = "reference" if c.modifier == "identifier" else c.param.kind
        if kind == "reference" and c.modifier in c.param.targets:
            values = [Ref(c.modifier, v.id) if isinstance(v, Ref) and v.id else v for v in c.values]
        else:
            values = list(c.values)
        return any_of([_value(kind, c.modifier, t, v) for v in values])

    def _special(self, c: Clause, alias: str) -> Sql:
        """`_id` and `_lastUpdated` (columns of `resources`), `:missing`, `:not`."""
        param = c.param
        if param.code == "_id":
            ids = [v.code for v in c.values if v.code is not None]
            return Sql(f"{alias}.id IN ({marks(ids)})", ids) if ids else Sql("1 = 0")
        if param.code == "_lastUpdated":
            return any_of([_range(v.prefix, f"{alias}.ts", f"{alias}.ts", v.lo, v.hi) for v in c.values])
        if c.modifier == "missing":
            valued = self._index_rows(c, values=False).select()
            missing = isinstance(c.values[0], Missing) and c.values[0].missing
            return Sql(f"{alias}.id {'NOT IN' if missing else 'IN'} ({valued.text})", valued.params)
        matching = self._index_rows(c).select()
        return Sql(f"{alias}.id NOT IN ({matching.text})", matching.params)

    def chain_targets(self, c: Chain) -> list[tuple[str, Sql]]:
        """(type, `SELECT id` of its resources matching the rest of the chain) per readable target type."""
        targets = []
        for target, inner in c.branches:
            if target not in self.restriction.readable:
                if c.explicit:
                    raise insufficient_scope(target, f"a chained search ({c.param.code}:{target})")
                continue
            r = self.alias("r")
            scan = all_of([live(r, target, self.restriction), self.criterion(inner, r)])
            targets.append((target, Sql(f"SELECT {r}.id FROM resources {r} WHERE {scan.text}", scan.params)))
        if not targets:
            raise insufficient_scope("/".join(t for t, _ in c.branches), f"a chained search ({c.param.code})")
        return targets

    def _chain(self, c: Chain, probe: bool = False) -> Rows:
        """References (by `c.param`) to a target matching the chain.

        Probed on PostgreSQL (few targets, each referenced often: probe.py), the targets are one array, found
        once before the walk (an InitPlan), and each walked resource is checked by one lookup of its own
        references. As `IN`, a generic plan found the targets again for every resource walked; this form keeps
        the plan the same whatever the values, so the page runs with a generic plan (probe.Counted.generic):
        a page of 11 enrolments of one study, 600 us of backend CPU planned for its values, 300 us generic."""
        f = self.alias("f")
        arrayed = probe and self.dialect == "postgresql"
        branches = [Sql(f"{f}.ref_type = ? AND {f}.ref_id "
                        + (f"= ANY(ARRAY({scan.text}))" if arrayed else f"IN ({scan.text})"), [target, *scan.params])
                    for target, scan in self.chain_targets(c)]
        where = all_of([Sql(f"{f}.type = ? AND {f}.param = ?", [c.param.type_name, c.param.code]), any_of(branches)])
        return Rows(f"search_reference {f}", f"{f}.id", where)

    def _has(self, c: Has) -> Rows:
        """References (by `c.param`) from a `c.source` resource matching the inner criterion."""
        if c.source not in self.restriction.readable:
            raise insufficient_scope(c.source, f"_has:{c.source}:{c.param.code}")
        f, s = self.alias("f"), self.alias("s")
        where = all_of([Sql(f"{f}.type = ? AND {f}.param = ? AND {f}.ref_type = ?", [c.source, c.param.code, c.target]),
                        live(s, c.source, self.restriction), self.criterion(c.inner, s)])
        return Rows(f"search_reference {f} JOIN resources {s} ON {s}.type = {f}.type AND {s}.id = {f}.id",
                    f"{f}.ref_id", where)


def sort_type(key: SortKey) -> type:
    """The Python type of a sort key's values (what a page token may carry for it)."""
    if key.param.code == "_lastUpdated" or key.param.kind == "date":
        return int
    return float if key.param.kind in ("number", "quantity") else str


def sort_expression(key: SortKey, alias: str) -> Sql:
    """The value a resource sorts by for `key`; absent values sort last in either direction."""
    param = key.param
    if param.code == "_id":
        return Sql(f"{alias}.id")
    if param.code == "_lastUpdated":
        return Sql(f"{alias}.ts")
    column = ("hi" if key.descending else "lo") if param.kind == "date" else _SORT_COLUMN[param.kind]
    sentinel = _SENTINEL.get(param.kind, _TEXT_SENTINEL)[1 if key.descending else 0]
    x = f"x_{param.kind}"
    return Sql(f"COALESCE((SELECT {'MAX' if key.descending else 'MIN'}({x}.{column}) FROM search_{param.kind} {x} "
               f"WHERE {x}.type = {alias}.type AND {x}.id = {alias}.id AND {x}.param = ?), ?)",
               [param.code, sentinel])
