"""The contract's cell spellings (source-export.md, "Common rules"), table-driven."""

from __future__ import annotations

from datetime import date

import pytest

from gateway.ingest.values import Reject, fhir_id, parse_boolean, parse_date, parse_decimal, parse_when, slug, to_json


@pytest.mark.parametrize(("text", "fhir"), [
    ("2019-03-05", "2019-03-05"),
    ("2019-03-05T14:20:00", "2019-03-05T14:20:00-05:00"),  # local time is America/New_York
    ("2019-07-05T14:20", "2019-07-05T14:20:00-04:00"),  # daylight saving time
    ("2019-03-05 14:20:00", "2019-03-05T14:20:00-05:00"),
    ("2019-03-05T14:20:00Z", "2019-03-05T14:20:00+00:00"),
    ("2019-03-05T14:20:00+01:00", "2019-03-05T14:20:00+01:00"),
    ("03/05/2019", "2019-03-05"),  # legacy LIMS, month first
    ("3/5/2019 14:20", "2019-03-05T14:20:00-05:00"),
])
def test_dates_in_every_accepted_spelling(text, fhir):
    assert to_json(parse_when(text)) == fhir


@pytest.mark.parametrize("text", ["05.03.2019", "2019/03/05", "March 5 2019", "2019-02-30", "13/01/2019", "20190305"])
def test_other_date_spellings_are_rejected(text):
    with pytest.raises(Reject):
        parse_when(text)


def test_a_timestamp_in_a_date_column_becomes_its_local_date():
    assert parse_date("2019-03-06T02:00:00Z") == date(2019, 3, 5)


@pytest.mark.parametrize(("text", "value"), [("Y", True), ("n", False), ("1", True), ("0", False),
                                             ("TRUE", True), ("false", False)])
def test_booleans(text, value):
    assert parse_boolean(text) is value


@pytest.mark.parametrize("text", ["yes", "x", "2", "T"])
def test_other_booleans_are_rejected(text):
    with pytest.raises(Reject):
        parse_boolean(text)


@pytest.mark.parametrize(("text", "value"), [("10", 10), ("0.5", 0.5), ("2.0", 2.0), ("-1", -1)])
def test_numbers(text, value):
    assert parse_decimal(text) == value and type(parse_decimal(text)) is type(value)


@pytest.mark.parametrize("text", ["ten", "1,5", "NaN", "inf"])
def test_other_numbers_are_rejected(text):
    with pytest.raises(Reject):
        parse_decimal(text)


def test_ids_stay_readable_when_fhir_allows_and_are_hashed_otherwise():
    assert fhir_id("BB-0012345-02") == "BB-0012345-02"
    hashed = fhir_id("BB 0012345/02")
    assert hashed == fhir_id("BB 0012345/02") and hashed.startswith("h-") and len(hashed) <= 64
    assert slug("Thomas O'Neil, MD") == "thomas-o-neil-md"
