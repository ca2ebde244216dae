"""The scratch of a load: what it must remember about every row, in a SQLite file instead of memory.

Why: a load needs facts about rows it has already passed — every key (a reference to a row
still to come waits for it, a duplicate rejects both rows), the values carried per subject,
every resource it accepted (references resolve to it, a derived resource is written once, the
Provenance names it), the values children inherit, the cohort members. As Python sets and
dicts these took about 0.5 KB a row, so a load's peak memory grew with the export (issue #6).
Here they live in a temporary SQLite database with a bounded page cache (CACHE_KIB): memory
stays flat and the disk holds the rest.

The file is unlinked as soon as SQLite holds it open (with no journal SQLite never needs its
name again): nothing else sees it, and the space returns to the disk when the load closes it
or its process ends, however it ends — a load killed with SIGKILL leaves nothing behind.

Reads of the second pass go through a memo (:class:`Facts`): the loader asks for all the keys
of a job in one query (`prefetch`), later reads of them cost a dict lookup, and writes wait
in the memo until `settle` writes them in one statement and forgets the memo. The loader
settles after every job, so the memo holds about one job's keys.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

CACHE_KIB = 8192
"""The scratch's page cache (what it may keep in memory); pages beyond it are read from the file
(the operating system's cache, most of the time)."""
STUDIES_AT_ONCE = 100
"""Studies read from the scratch at a time while the cohort Groups are built."""
_KEYS = "SELECT value FROM json_each(?)"
"""The keys of a query, passed as one JSON array: one statement whatever their number (a list of
`?` would be a new statement, prepared again, for every length)."""

_ABSENT = object()
"""The memo's mark for a key known not to be in the table."""
_UNKNOWN = object()
"""What the memo answers for a key it does not hold."""


class Facts:
    """One table of the scratch: key -> a JSON value (None for a plain set), read through a memo."""

    def __init__(self, db: sqlite3.Connection, name: str) -> None:
        self._db, self._name = db, name
        db.execute(f"CREATE TABLE {name} (key TEXT PRIMARY KEY, value BLOB) WITHOUT ROWID")
        self._memo: dict[str, Any] = {}
        self._unwritten: dict[str, Any] = {}

    def prefetch(self, keys: Iterable[str]) -> None:
        """Read the keys not in the memo yet, in as few queries as possible."""
        wanted = [key for key in set(keys) if key not in self._memo]
        if not wanted:
            return
        found = dict(self._db.execute(f"SELECT key, value FROM {self._name} WHERE key IN ({_KEYS})",
                                      (orjson.dumps(wanted),)))
        for key in wanted:
            self._memo[key] = _decode(found[key]) if key in found else _ABSENT

    def _read(self, key: str) -> Any:
        """A key the memo does not hold (a row that waited for another job's row, most likely)."""
        row = self._db.execute(f"SELECT value FROM {self._name} WHERE key = ?", (key,)).fetchone()
        value = self._memo[key] = _ABSENT if row is None else _decode(row[0])
        return value

    def __contains__(self, key: str) -> bool:
        value = self._memo.get(key, _UNKNOWN)  # the memo inline: called for every reference of every row
        return (self._read(key) if value is _UNKNOWN else value) is not _ABSENT

    def get(self, key: str) -> Any:
        """The key's value; None when it has none, or is not in the table."""
        value = self._memo.get(key, _UNKNOWN)
        if value is _UNKNOWN:
            value = self._read(key)
        return None if value is _ABSENT else value

    def add(self, key: str, value: Any = None) -> None:
        """Set the key's value (written at the next `settle`)."""
        self._memo[key] = self._unwritten[key] = value

    def settle(self) -> None:
        """Write what was added and forget the memo (it would otherwise grow with the load)."""
        if self._unwritten:
            self._db.executemany(f"INSERT OR REPLACE INTO {self._name} VALUES (?, ?)",
                                 [(key, _encode(value)) for key, value in self._unwritten.items()])
            self._unwritten.clear()
        self._memo.clear()

    def count(self) -> int:
        self.settle()
        return self._db.execute(f"SELECT count(*) FROM {self._name}").fetchone()[0]

    def sorted_keys(self, size: int) -> Iterator[list[str]]:
        """Every key in code point order (as Python sorts them), `size` at a time."""
        self.settle()
        cursor = self._db.execute(f"SELECT key FROM {self._name} ORDER BY key")
        while rows := cursor.fetchmany(size):
            yield [key for (key,) in rows]


def _encode(value: Any) -> bytes | None:
    return None if value is None else orjson.dumps(value)


def _decode(raw: bytes | None) -> Any:
    return None if raw is None else orjson.loads(raw)


class Scratch:
    """A load's scratch database: the first pass's keys and carried values, then the second
    pass's facts (`loaded`, `rejected`, `in_store`, `inherited`) and cohort members."""

    def __init__(self) -> None:
        handle, path = tempfile.mkstemp(prefix="biobank-load-", suffix=".sqlite")
        os.close(handle)
        try:
            self._db = sqlite3.connect(path, isolation_level=None)
        finally:
            os.unlink(path)
        for pragma in ("journal_mode = OFF", "synchronous = OFF", "locking_mode = EXCLUSIVE",
                       f"cache_size = -{CACHE_KIB}", "temp_store = FILE"):
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript("""
            CREATE TABLE keys (record_set TEXT, key TEXT, line INTEGER, PRIMARY KEY (record_set, key, line))
                WITHOUT ROWID;
            CREATE TABLE observed (subject TEXT, column TEXT, value TEXT, record_set TEXT, line INTEGER);
            CREATE TABLE carried (subject TEXT, column TEXT, value TEXT, PRIMARY KEY (subject, column)) WITHOUT ROWID;
            CREATE TABLE duplicates (record_set TEXT, key TEXT, PRIMARY KEY (record_set, key)) WITHOUT ROWID;
            CREATE TABLE cohorts (study TEXT PRIMARY KEY) WITHOUT ROWID;
            CREATE TABLE members (study TEXT, entity TEXT, member BLOB, PRIMARY KEY (study, entity)) WITHOUT ROWID;
        """)
        # One transaction for the whole load (it is never committed): a statement then writes to
        # the page cache, not to the file (3 us a row less than a transaction per statement).
        self._db.execute("BEGIN")
        self.loaded = Facts(self._db, "loaded")
        """Type/id of every resource this load accepted or derived."""
        self.rejected = Facts(self._db, "rejected")
        """Type/id of every row this load rejected."""
        self.in_store = Facts(self._db, "in_store")
        """Type/id -> whether the store holds it (asked once per id)."""
        self.inherited = Facts(self._db, "inherited")
        """Type/id -> its value of its record set's `inherit` element."""
        self._duplicated: set[str] = set()
        self._carries = False

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the file (its space returns to the disk)."""
        self._db.close()

    def settle(self) -> None:
        for facts in (self.loaded, self.rejected, self.in_store, self.inherited):
            facts.settle()

    # -- the first pass ------------------------------------------------------------------

    def add_keys(self, record_set: str, keys: Iterable[tuple[str, int]]) -> None:
        """(key, line) of rows of `record_set`, in file order."""
        self._db.executemany("INSERT INTO keys VALUES (?, ?, ?)", ((record_set, k, line) for k, line in keys))

    def add_carried(self, record_set: str, observed: Iterable[tuple[str, str, str, int]]) -> None:
        """(subject, column, value, line) of rows of `record_set`, in the order the first pass reads them."""
        self._db.executemany("INSERT INTO observed VALUES (?, ?, ?, ?, ?)",
                             ((subject, column, value, record_set, line) for subject, column, value, line in observed))

    def end_scan(self, examples: int) -> tuple[int, list[tuple[str, str, str, str, str, int]]]:
        """Settle the first pass: duplicated keys, and per subject and column the first value read.
        Returns the number of values that conflict with a subject's first one, and the first
        `examples` of them (subject, column, first value, value, record set, line) in reading order."""
        self._db.execute(
            "INSERT INTO duplicates SELECT record_set, key FROM keys GROUP BY record_set, key HAVING count(*) > 1")
        self._duplicated = {name for (name,) in self._db.execute("SELECT DISTINCT record_set FROM duplicates")}
        self._db.execute("""
            INSERT INTO carried SELECT subject, column, value FROM observed
            WHERE rowid IN (SELECT min(rowid) FROM observed GROUP BY subject, column)""")
        self._carries = self._db.execute("SELECT EXISTS (SELECT 1 FROM carried)").fetchone()[0] == 1
        conflicts = """
            FROM observed o JOIN carried c ON c.subject = o.subject AND c.column = o.column
            WHERE o.value <> c.value"""
        count = self._db.execute(f"SELECT count(*) {conflicts}").fetchone()[0]
        first = self._db.execute(
            f"SELECT o.subject, o.column, c.value, o.value, o.record_set, o.line {conflicts} ORDER BY o.rowid LIMIT ?",
            (examples,)).fetchall()
        self._db.execute("DROP TABLE observed")
        return count, first

    def has_key(self, record_set: str, key: str) -> bool:
        """Whether a row of `record_set` in this export has `key`."""
        found = self._db.execute("SELECT 1 FROM keys WHERE record_set = ? AND key = ? LIMIT 1", (record_set, key))
        return found.fetchone() is not None

    def duplicates(self, record_set: str, keys: Iterable[str]) -> dict[str, tuple[int, ...]]:
        """The keys among `keys` that more than one row of `record_set` has -> their lines, in order."""
        if record_set not in self._duplicated:
            return {}
        found = self._db.execute(
            f"SELECT json_group_array(key) FROM duplicates WHERE record_set = ? AND key IN ({_KEYS})",
            (record_set, orjson.dumps(list(set(keys))))).fetchone()[0]
        lines: dict[str, list[int]] = {}
        if found != "[]":  # the duplicates table is small: ask the keys for lines only when one is there
            rows = self._db.execute(
                f"SELECT key, line FROM keys WHERE record_set = ? AND key IN ({_KEYS}) ORDER BY key, line",
                (record_set, found))
            for key, line in rows:
                lines.setdefault(key, []).append(line)
        return {key: tuple(at) for key, at in lines.items()}

    def carried(self, subjects: Iterable[str]) -> dict[str, dict[str, str]]:
        """subject -> {column: the first value read anywhere in the export} for `subjects`."""
        out: dict[str, dict[str, str]] = {}
        if not self._carries:
            return out
        rows = self._db.execute(f"SELECT subject, column, value FROM carried WHERE subject IN ({_KEYS})",
                                (orjson.dumps(list(set(subjects))),))
        for subject, column, value in rows:
            out.setdefault(subject, {})[column] = value
        return out

    # -- cohorts --------------------------------------------------------------------------

    def add_cohort(self, study: str) -> None:
        """A study whose cohort Group this load writes."""
        self._db.execute("INSERT OR IGNORE INTO cohorts VALUES (?)", (study,))

    def set_member(self, study: str, entity: str, member: dict[str, Any] | None) -> None:
        """The latest word of this load on `entity` in `study`'s cohort: `member`, or None (it leaves)."""
        self.add_cohort(study)
        self._db.execute("INSERT OR REPLACE INTO members VALUES (?, ?, ?)", (study, entity, _encode(member)))

    def cohorts(self) -> Iterator[tuple[str, dict[str, dict[str, Any] | None]]]:
        """(study, entity -> member or None) of every cohort, studies in code point order, one at a time."""
        studies = self._db.execute("SELECT study FROM cohorts ORDER BY study")
        while rows := studies.fetchmany(STUDIES_AT_ONCE):
            for (study,) in rows:
                members = self._db.execute("SELECT entity, member FROM members WHERE study = ?", (study,))
                yield study, {entity: _decode(member) for entity, member in members}
