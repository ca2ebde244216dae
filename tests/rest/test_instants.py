"""FHIR instants written from the store's microseconds (meta.lastUpdated, Bundle.timestamp, history entries):
the per-second cache of `to_instant` must give exactly what formatting the whole value gives, across second
boundaries, before 1970 and at the microsecond ends of a second, and read back to the same value."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from gateway.fhir.instant import parse_instant, to_instant

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EDGES = [0, 1, 999_999, 1_000_000, -1, -999_999, -1_000_000, -1_000_001, 1_764_316_800_123_456,
         253_402_300_799_999_999]


@pytest.mark.parametrize("us", EDGES + random.Random(7).sample(range(-10**16, 10**17), 200))
def test_an_instant_is_the_value_formatted_in_full(us: int) -> None:
    assert to_instant(us) == (EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert parse_instant(to_instant(us)) == us


def test_instants_of_one_second_keep_their_fraction() -> None:
    second = 1_764_316_800_000_000
    assert [to_instant(second + f) for f in (0, 7, 999_999)] == [
        "2025-11-28T08:00:00.000000Z", "2025-11-28T08:00:00.000007Z", "2025-11-28T08:00:00.999999Z"]
