"""JUnit XML of a run: one <testsuite> per suite, one <testcase> per case, so CI systems show each check.

Why JUnit: every CI shows it without a plugin; a failing check is a <failure> whose text holds
the failed expectations and the request/response excerpts.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from gateway.conformance.model import CaseResult, RunResult


def _failure_text(case: CaseResult) -> str:
    lines = [f"{c.name}: {c.detail}" for c in case.failures]
    for exchange in case.exchanges:
        lines += ["", f"> {exchange.method} {exchange.url}", exchange.request_body,
                  f"< {exchange.status or exchange.error}", exchange.response_body]
    return "\n".join(line for line in lines if line is not None)


def _testcase(parent: ET.Element, case: CaseResult) -> None:
    element = ET.SubElement(parent, "testcase", classname=f"conformance.{case.suite}", name=case.id,
                            time=f"{case.seconds:.3f}")
    if case.outcome == "fail":
        first = case.failures[0]
        failure = ET.SubElement(element, "failure", message=f"{first.name}: {first.detail}"[:500], type="conformance")
        failure.text = _failure_text(case)
    elif case.outcome == "skip":
        reason = case.skip_reason or "; ".join(f"{c.name}: {c.detail}" for c in case.checks)
        ET.SubElement(element, "skipped", message=reason[:500])
    out = ET.SubElement(element, "system-out")
    out.text = "\n".join(f"[{c.outcome}] {c.name}" + (f" — {c.detail}" if c.detail else "") for c in case.checks)


def write(result: RunResult, path: Path) -> None:
    root = ET.Element("testsuites", name=f"FHIR conformance of {result.base}", tests=str(len(result.cases)),
                      failures=str(result.count("fail")), skipped=str(result.count("skip")),
                      time=f"{result.seconds:.3f}")
    for suite, cases in result.by_suite().items():
        element = ET.SubElement(root, "testsuite", name=suite, tests=str(len(cases)),
                                failures=str(sum(c.outcome == "fail" for c in cases)),
                                skipped=str(sum(c.outcome == "skip" for c in cases)), errors="0",
                                time=f"{sum(c.seconds for c in cases):.3f}", timestamp=result.started)
        for case in cases:
            _testcase(element, case)
    ET.indent(root)
    path.write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))
