"""Value normalisation shared by the indexer (resource values) and the parser (search values).

Both sides must agree byte for byte — a string indexed one way and searched another never
matches — so the rules live here once: strings fold case and accents, dates become
inclusive microsecond ranges, decimals carry the range their written precision implies.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from gateway.fhir.instant import from_datetime

LOWEST = -(2**62)
HIGHEST = 2**62
"""Open ends of a date range (a Period without start or end), as microseconds."""

_DATE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def normalize(text: str) -> str:
    """Case- and accent-insensitive form of a string (FHIR string search: 'Müller' finds 'muller')."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def date_range(text: str) -> tuple[int, int]:
    """The inclusive range [first, last] microsecond a FHIR date/dateTime/instant denotes.

    A partial date is the whole of its year, month or day; a time without seconds the whole
    minute. A value without a timezone is taken as UTC. ValueError when it is not a date.
    """
    m = _DATE.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a FHIR date, dateTime or instant")
    year, month, day = int(m["y"]), int(m["m"] or 1), int(m["d"] or 1)
    tz = m["tz"]
    offset = timedelta(0)
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        offset = sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
    hour, minute, second = int(m["H"] or 0), int(m["M"] or 0), int(m["S"] or 0)
    fraction = (m["f"] or "")[:6]
    start = datetime(year, month, day, hour, minute, second, int(fraction.ljust(6, "0") or 0), tzinfo=UTC) - offset
    if m["f"]:
        step = timedelta(microseconds=10 ** (6 - len(fraction)))
    elif m["S"]:
        step = timedelta(seconds=1)
    elif m["M"]:
        step = timedelta(minutes=1)
    elif m["d"]:
        step = timedelta(days=1)
    elif m["m"]:
        step = _months_later(start, 1) - start
    else:
        step = _months_later(start, 12) - start
    first = from_datetime(start)
    return first, first + step // timedelta(microseconds=1) - 1


def _months_later(moment: datetime, months: int) -> datetime:
    total = moment.month - 1 + months
    return moment.replace(year=moment.year + total // 12, month=total % 12 + 1)


def decimal_range(text: str) -> tuple[Decimal, float, float]:
    """(value, low, high): the number and the half-open range its precision implies ('1.5' -> [1.45, 1.55))."""
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"{text!r} is not a number") from exc
    if not value.is_finite():
        raise ValueError(f"{text!r} is not a finite number")
    exponent = value.as_tuple().exponent
    half = Decimal(5) * Decimal(10) ** (int(exponent) - 1)
    return value, float(value - half), float(value + half)


_LOCAL_REF = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


def local_reference(text: str) -> tuple[str, str] | None:
    """(type, id) of a relative literal reference `Type/id` (a version suffix is dropped), else None."""
    m = _LOCAL_REF.match(text)
    return (m.group(1), m.group(2)) if m else None
