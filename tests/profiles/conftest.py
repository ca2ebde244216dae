"""Shared fixtures: one validator for the session and the example resources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.profiles import ProfileValidator

EXAMPLES = Path(__file__).parent / "examples"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def good_paths() -> list[Path]:
    return sorted((EXAMPLES / "good").glob("*.json"))


def bad_paths() -> list[Path]:
    return sorted(p for p in (EXAMPLES / "bad").glob("*.json") if not p.name.endswith(".expected.json"))


@pytest.fixture(scope="session")
def validator() -> ProfileValidator:
    return ProfileValidator.load()
