"""The shapes of a conformance run: suites and cases as read from conformance/, and their results.

Why separate: the loader, the runner and the two reports all speak these types, and none of
them needs to know how the others work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Outcome = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class Step:
    """One HTTP exchange of a case: the request template, what to expect, what to keep for later steps."""

    request: dict[str, Any]
    expect: dict[str, Any] = field(default_factory=dict)
    capture: dict[str, dict[str, Any]] = field(default_factory=dict)
    poll: dict[str, Any] | None = None
    title: str = ""


@dataclass(frozen=True)
class Case:
    """A test case as written in a suite file; `for_each` makes it a template expanded per target."""

    id: str
    title: str
    steps: tuple[Step, ...]
    needs: dict[str, Any] = field(default_factory=dict)
    for_each: str | None = None
    requires: tuple[str, ...] = ()
    let: dict[str, Any] = field(default_factory=dict)
    writes: bool = False


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    cases: tuple[Case, ...]
    fixtures: tuple[str, ...] = ()


@dataclass
class Exchange:
    """Request and response excerpts, kept so a failure can be understood from the report alone."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: str
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: str = ""
    error: str = ""


@dataclass
class Check:
    """One assertion's verdict; `detail` says what was expected and what came back."""

    name: str
    outcome: Outcome
    detail: str = ""


@dataclass
class CaseResult:
    suite: str
    id: str
    title: str
    checks: list[Check] = field(default_factory=list)
    exchanges: list[Exchange] = field(default_factory=list)
    seconds: float = 0.0
    skip_reason: str = ""

    @property
    def outcome(self) -> Outcome:
        if self.skip_reason:
            return "skip"
        if any(c.outcome == "fail" for c in self.checks):
            return "fail"
        if self.checks and all(c.outcome == "skip" for c in self.checks):
            return "skip"
        return "pass"

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.outcome == "fail"]


@dataclass
class RunResult:
    base: str
    started: str
    cases: list[CaseResult] = field(default_factory=list)
    seconds: float = 0.0
    descriptions: dict[str, str] = field(default_factory=dict)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for c in self.cases if c.outcome == outcome)

    @property
    def ok(self) -> bool:
        return self.count("fail") == 0

    def by_suite(self) -> dict[str, list[CaseResult]]:
        out: dict[str, list[CaseResult]] = {}
        for case in self.cases:
            out.setdefault(case.suite, []).append(case)
        return out
