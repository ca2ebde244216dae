"""Parsing the export's text cells into typed values, and typed values into FHIR JSON.

The contract (source-export.md, "Common rules") fixes the accepted spellings: ISO 8601 or the
legacy LIMS `MM/DD/YYYY[ HH:MM]` dates with America/New_York as the local zone, and
`Y/N`, `1/0`, `true/false` booleans. Anything else raises :class:`Reject`, whose message
is what the load report shows, so it says what was wrong and what was expected.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

LOCAL_ZONE = ZoneInfo("America/New_York")

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")
_LEGACY = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?: (\d{1,2}):(\d{2}))?")
_TRUE = frozenset({"y", "1", "true"})
_FALSE = frozenset({"n", "0", "false"})
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


class Reject(Exception):
    """A record is refused; the message is the reason in the load report."""


def parse_when(text: str) -> date | datetime:
    """A date (kept date-only) or an aware datetime; naive times are America/New_York."""
    try:
        if _ISO_DATE.fullmatch(text):
            return date.fromisoformat(text)
        if _ISO_DATETIME.fullmatch(text):
            moment = datetime.fromisoformat(text)
            return moment if moment.tzinfo else moment.replace(tzinfo=LOCAL_ZONE)
        legacy = _LEGACY.fullmatch(text)
        if legacy:
            month, day, year, hour, minute = legacy.groups()
            if hour is None:
                return date(int(year), int(month), int(day))
            return datetime(int(year), int(month), int(day), int(hour), int(minute), tzinfo=LOCAL_ZONE)
    except ValueError as exc:
        raise Reject(f"invalid date {text!r}: {exc}") from None
    raise Reject(f"unrecognised date {text!r}: expected ISO 8601 or MM/DD/YYYY[ HH:MM]")


def parse_date(text: str) -> date:
    """A calendar date; a timestamp is reduced to its local (New York) date."""
    value = parse_when(text)
    return value.astimezone(LOCAL_ZONE).date() if isinstance(value, datetime) else value


def is_future(value: date | datetime) -> bool:
    if isinstance(value, datetime):
        return value > datetime.now(UTC)
    return value > datetime.now(LOCAL_ZONE).date()


def as_instant(value: date | datetime) -> datetime:
    """Comparable moment: a date means its first local moment (used for `--since`)."""
    if isinstance(value, datetime):
        return value
    return datetime(value.year, value.month, value.day, tzinfo=LOCAL_ZONE)


def parse_boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise Reject(f"invalid boolean {text!r}: expected Y/N, 1/0 or true/false")


def parse_decimal(text: str) -> int | float:
    """A number as JSON will carry it: integral values stay integers (`2`, not `2.0`)."""
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise Reject(f"invalid number {text!r}") from None
    if not number.is_finite():
        raise Reject(f"invalid number {text!r}")
    return int(number) if number == number.to_integral_value() and "." not in text else float(number)


def to_json(value: Any) -> Any:
    """A typed value as its FHIR JSON form (dates ISO 8601, times with their offset)."""
    if value.__class__ is str:  # most values: no isinstance walk
        return value
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    return value


def to_text(value: Any) -> str:
    """A typed value inside a string template or as a code to translate."""
    if value.__class__ is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(to_json(value))


def fhir_id(text: str) -> str:
    """The source id itself when FHIR allows it (readable, stable); else a stable hash of it."""
    if _FHIR_ID.fullmatch(text):
        return text
    return "h-" + hashlib.sha256(text.encode()).hexdigest()[:40]


def slug(text: str) -> str:
    """A name as an id fragment: `Jane Doe, MD` -> `jane-doe-md` (hashed when too long)."""
    out = _NOT_SLUG.sub("-", text.lower()).strip("-")
    if not out or len(out) > 48:
        return (out[:30] + "-" if out else "") + hashlib.sha256(text.encode()).hexdigest()[:16]
    return out
