"""Reads the suites under conformance/ (YAML) into :mod:`model` objects.

Why strict: a typo in a data file ("expct:") would otherwise silently turn a check into
nothing; every unknown key is an error that names the file and the case.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gateway.conformance.model import Case, Step, Suite

DEFINITIONS_DIR = Path(__file__).resolve().parents[2] / "conformance"
SUITES = ("capabilities", "rest", "search", "smart", "bulk", "profiles")
"""Run order: later suites find the data earlier ones created."""

_CASE_KEYS = {"id", "title", "steps", "needs", "for_each", "requires", "let", "writes"}
_STEP_KEYS = {"request", "expect", "capture", "poll", "title"}
_SUITE_KEYS = {"suite", "description", "cases", "fixtures"}


class SuiteError(ValueError):
    """A suite file that cannot be run as written."""


def _only(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise SuiteError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _step(data: dict[str, Any], where: str) -> Step:
    _only(data, _STEP_KEYS, where)
    if "request" not in data:
        raise SuiteError(f"{where}: a step needs a request")
    return Step(request=data["request"], expect=data.get("expect") or {}, capture=data.get("capture") or {},
                poll=data.get("poll"), title=data.get("title", ""))


def _case(data: dict[str, Any], where: str) -> Case:
    _only(data, _CASE_KEYS, where)
    where = f"{where} {data.get('id', '?')}"
    steps = tuple(_step(s, f"{where} step {i + 1}") for i, s in enumerate(data.get("steps") or []))
    if not steps:
        raise SuiteError(f"{where}: a case needs at least one step")
    return Case(id=data["id"], title=data.get("title", data["id"]), steps=steps, needs=data.get("needs") or {},
                for_each=data.get("for_each"), requires=tuple(data.get("requires") or ()), let=data.get("let") or {},
                writes=bool(data.get("writes", False)))


def load_suite(path: Path) -> Suite:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    where = path.name
    if not isinstance(data, dict):
        raise SuiteError(f"{where}: expected a mapping with 'suite' and 'cases'")
    _only(data, _SUITE_KEYS, where)
    cases = tuple(_case(c, where) for c in data.get("cases") or [])
    return Suite(name=data["suite"], description=data.get("description", ""), cases=cases,
                 fixtures=tuple(data.get("fixtures") or ()))


def load_suites(names: list[str] | None = None, directory: Path = DEFINITIONS_DIR) -> list[Suite]:
    """The named suites (all when `names` is empty), in run order."""
    wanted = list(names) if names else list(SUITES)
    unknown = [n for n in wanted if not (directory / f"{n}.yaml").is_file()]
    if unknown:
        available = sorted(p.stem for p in directory.glob("*.yaml"))
        raise SuiteError(f"no suite named {unknown} in {directory}; available: {available}")
    ordered = sorted(wanted, key=lambda n: SUITES.index(n) if n in SUITES else len(SUITES))
    return [load_suite(directory / f"{n}.yaml") for n in ordered]


def read_data_file(name: str, directory: Path = DEFINITIONS_DIR) -> str:
    """A body or fixture file named relative to conformance/."""
    path = (directory / name).resolve()
    if directory.resolve() not in path.parents:
        raise SuiteError(f"{name}: data files must live under {directory}")
    return path.read_text(encoding="utf-8")
