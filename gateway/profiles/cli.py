"""`biobank-gateway validate FILE...`: validate FHIR JSON, Bundle or NDJSON files (the lead wires it into typer).

Why a plain function: the command, tests and scripts share it without a CLI framework.
Each resource gets an OperationOutcome-style report; a file that cannot be read or parsed
is reported as one fatal entry instead of stopping the run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import orjson

from gateway.fhir.errors import Issue, has_errors, operation_outcome


class Validator(Protocol):
    def validate(self, resource: dict[str, Any], profile: str | None = None) -> list[Issue]: ...


def validate_files(paths: list[Path], validator: Validator) -> tuple[int, list[dict[str, Any]]]:
    """(number of resources with errors, one report per resource).

    A report is `{"file", "index", "resourceType", "id", "valid", "outcome": OperationOutcome}`;
    `index` is the line number (NDJSON, 1-based) or the Bundle entry position (0-based),
    None for a single resource.
    """
    reports: list[dict[str, Any]] = []
    errors = 0
    for path in paths:
        for index, resource, issues in _resources(path):
            if resource is not None:
                issues = [*issues, *validator.validate(resource)]
            failed = has_errors(issues)
            errors += failed
            reports.append(
                {
                    "file": str(path),
                    "index": index,
                    "resourceType": resource.get("resourceType") if resource else None,
                    "id": resource.get("id") if resource else None,
                    "valid": not failed,
                    "outcome": operation_outcome(issues),
                }
            )
    return errors, reports


Parsed = tuple[int | None, dict[str, Any] | None, list[Issue]]


def _resources(path: Path) -> Iterator[Parsed]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        yield None, None, [Issue("fatal", "not-found", f"{path}: {exc.strerror}")]
        return
    if path.suffix == ".ndjson":
        for line_no, line in enumerate(data.splitlines(), start=1):
            if line.strip():
                yield from _parsed(line, line_no, path)
        return
    for index, resource, issues in _parsed(data, None, path):
        if resource is not None and resource.get("resourceType") == "Bundle":
            for i, entry in enumerate(resource.get("entry", [])):
                inner = entry.get("resource") if isinstance(entry, dict) else None
                if isinstance(inner, dict):
                    yield i, inner, []
                else:
                    yield (
                        i,
                        None,
                        [
                            Issue(
                                "error",
                                "structure",
                                f"{path}: Bundle.entry[{i}] has no resource",
                                (f"Bundle.entry[{i}]",),
                            )
                        ],
                    )
        else:
            yield index, resource, issues


def _parsed(raw: bytes, index: int | None, path: Path) -> Iterator[Parsed]:
    try:
        resource = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        yield index, None, [Issue("fatal", "structure", f"{path}{f' line {index}' if index else ''}: not JSON ({exc})")]
        return
    if not isinstance(resource, dict) or "resourceType" not in resource:
        yield (
            index,
            None,
            [Issue("fatal", "structure", f"{path}{f' line {index}' if index else ''}: not a FHIR resource")],
        )
        return
    yield index, resource, []
