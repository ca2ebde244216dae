"""Schemathesis against openapi.yaml and a running gateway (with a token), bounded: a fixed
number of examples per operation and a time cap. Every answer below 500, and every 4xx of the
FHIR API an OperationOutcome. The figures are printed for the closing note."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from tests.conformance.conftest import RunningGateway

OPENAPI = Path(__file__).resolve().parents[2] / "openapi.yaml"
EXAMPLES_PER_OPERATION = 6
TIME_CAP_SECONDS = 110.0


@dataclass
class Figures:
    operations: int = 0
    examples: int = 0
    failures: list[str] = field(default_factory=list)
    unsent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)


def _problem(path: str, status: int, body: bytes) -> str | None:
    if status >= 500:
        return f"{status} server error"
    if 400 <= status < 500 and path.startswith("/fhir") and b'"resourceType":"OperationOutcome"' not in \
            body.replace(b" ", b""):
        return f"{status} without an OperationOutcome: {body[:200]!r}"
    return None


def _exercise(operation: schemathesis.APIOperation, origin: str, headers: dict[str, str], figures: Figures) -> None:
    """A fixed, reproducible set of examples of one operation; problems are collected, not raised, so
    hypothesis does not spend the time budget shrinking them."""

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def exercise(case: schemathesis.Case) -> None:
        figures.examples += 1
        try:
            response = case.call(base_url=origin, headers=headers, timeout=10)
        except Exception:  # a generated request the HTTP client refuses to send is not the server's fault
            figures.unsent += 1
            return
        figures.statuses[response.status_code] += 1
        problem = _problem(case.path, response.status_code, response.content)
        if problem:
            sent = response.request
            figures.failures.append(f"{operation.label}: {problem} — {sent.method} {sent.url} body={sent.body!r:.300}")

    exercise()


def test_fuzzing_the_http_surface_finds_no_server_error(running_gateway: RunningGateway) -> None:
    schema = schemathesis.openapi.from_path(OPENAPI)
    origin = running_gateway.base.removesuffix("/fhir")
    headers = {"Authorization": f"Bearer {running_gateway.token()}"}
    figures = Figures()
    started = time.monotonic()
    for found in schema.get_all_operations():
        if time.monotonic() - started > TIME_CAP_SECONDS:
            break
        figures.operations += 1
        _exercise(found.ok(), origin, headers, figures)
    elapsed = time.monotonic() - started
    print(f"\nschemathesis: {figures.operations} operations, {figures.examples} examples, "
          f"{len(figures.failures)} failures, {figures.unsent} not sent, {elapsed:.0f}s; "
          f"statuses {dict(sorted(figures.statuses.items()))}")
    assert not figures.failures, "\n".join(sorted(set(figures.failures))[:50])
