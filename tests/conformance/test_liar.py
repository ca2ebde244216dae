"""The runner against a server that lies in its CapabilityStatement reports exactly the lies."""

from __future__ import annotations

from pathlib import Path

import httpx
from typer.testing import CliRunner

from gateway.conformance.cli import app, run
from gateway.conformance.loader import load_suites
from gateway.conformance.needs import RunOptions
from gateway.conformance.runner import Runner
from gateway.conformance.target import Target
from tests.conformance import liar


def test_the_runner_reports_exactly_the_lies(liar_base: str) -> None:
    with httpx.Client(timeout=10) as http:
        runner = Runner(Target(liar_base, http), RunOptions(allow_writes=False, has_token=False, has_client=False))
        result = runner.run(load_suites())
    failed = {f"{c.suite}/{c.id}" for c in result.cases if c.outcome == "fail"}
    assert failed == liar.LIES, "\n".join(f"{c.suite}/{c.id}: {[(k.name, k.detail) for k in c.failures]}"
                                          for c in result.cases if c.outcome == "fail")
    passed = {f"{c.suite}/{c.id}" for c in result.cases if c.outcome == "pass"}
    assert {"capabilities/read/Specimen", "search/Specimen/status/filters", "search/Specimen/type/finds"} <= passed


def test_a_failing_run_exits_non_zero_and_writes_both_reports(liar_base: str, tmp_path: Path) -> None:
    code = run(liar_base, suites=["capabilities"], report_dir=tmp_path)
    assert code == 1
    junit = (tmp_path / "conformance.junit.xml").read_text()
    assert 'name="history-instance/Specimen"' in junit and "<failure" in junit
    html = (tmp_path / "conformance.html").read_text()
    assert "history-instance/Specimen" in html and "Response" in html and "does not conform" in html


def test_the_typer_command_runs_a_suite_and_exits_with_its_verdict(liar_base: str) -> None:
    result = CliRunner().invoke(app, ["run", "--base", liar_base, "--suite", "capabilities"])
    assert result.exit_code == 1
    assert "FAIL capabilities/history-instance/Specimen" in result.output
    assert "passed, 1 failed" in result.output
