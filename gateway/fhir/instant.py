"""FHIR `instant` values <-> the store's integer microseconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from functools import lru_cache

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_us() -> int:
    return time.time_ns() // 1000


def to_instant(us: int) -> str:
    """`2026-11-28T07:48:25.123456Z`: the store's microseconds as a FHIR instant."""
    seconds, fraction = divmod(us, 1_000_000)
    return f"{_instant_second(seconds)}.{fraction:06d}Z"


@lru_cache(maxsize=4096)
def _instant_second(seconds: int) -> str:
    """strftime took 5 us, on every Bundle (its timestamp) and history entry; instants written in one
    second share this part."""
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")


def to_http_date(us: int) -> str:
    """RFC 9110 IMF-fixdate for Last-Modified."""
    return _http_date(us // 1_000_000)


@lru_cache(maxsize=4096)
def _http_date(seconds: int) -> str:
    """Formatting was 5% of a read (it is on every response that carries a resource); resources are
    written in batches, so many share their second."""
    return formatdate(seconds, usegmt=True)


def from_datetime(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(microseconds=1)


def parse_instant(text: str) -> int:
    """Microseconds of a FHIR dateTime/instant (a date alone means its first moment, UTC)."""
    value = text.strip().replace("Z", "+00:00")
    if len(value) == 4:
        value += "-01-01"
    elif len(value) == 7:
        value += "-01"
    return from_datetime(datetime.fromisoformat(value))
