"""OperationOutcome issues and the one exception type that carries them to the client.

Handlers raise :class:`FhirError` (or return issues); exactly one place in the API layer
turns it into an HTTP response, so every error a client sees is an OperationOutcome
with a status code that fits (FHIR R4 http.html#Status-Codes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Severity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue: `code` is from the R4 issue-type value set."""

    severity: Severity
    code: str
    diagnostics: str
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: list[Issue] | tuple[Issue, ...]) -> dict[str, Any]:
    """An OperationOutcome resource (as a dict) holding `issues`."""
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


@dataclass
class FhirError(Exception):
    """An error that ends the interaction with `status` and an OperationOutcome."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, status: int, code: str, diagnostics: str, expression: tuple[str, ...] = (),
           headers: dict[str, str] | None = None) -> FhirError:
        return cls(status, [Issue("error", code, diagnostics, expression)], headers or {})

    def __str__(self) -> str:
        return f"{self.status}: " + "; ".join(i.diagnostics for i in self.issues)


def has_errors(issues: list[Issue]) -> bool:
    return any(i.severity in ("error", "fatal") for i in issues)
