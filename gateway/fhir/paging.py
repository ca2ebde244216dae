"""Opaque page tokens: keyset positions wrapped so clients cannot (and need not) read them.

A token is URL-safe base64 of compact JSON; it carries a position, never an OFFSET, so a
page stays right while other resources are being written.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from gateway.fhir.errors import FhirError


def encode(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(position)).rstrip(b"=").decode()


def decode(token: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        raise FhirError.of(400, "invalid", "The page token is malformed: follow the Bundle's links") from exc
    if not isinstance(value, dict):
        raise FhirError.of(400, "invalid", "The page token is malformed: follow the Bundle's links")
    return value


def parse_count(value: str | None, default: int, cap: int) -> int:
    """`_count`: a non-negative integer, capped (the cap is a limit, not an error)."""
    if value is None or value == "":
        return default
    if not value.isdigit():
        raise FhirError.of(400, "invalid", f"_count must be a non-negative integer, got {value!r}")
    return min(int(value), cap)
