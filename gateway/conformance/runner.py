"""Runs suites against a target: expands templates, checks needs, sends steps, collects checks.

Why steps stop at the first failing one: later steps of a case use what earlier ones
captured (an id, a status URL); going on would report noise instead of the cause.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from gateway.conformance import assertions, fhirpath, generators, needs, templating
from gateway.conformance.auth import BackendClient
from gateway.conformance.loader import DEFINITIONS_DIR, read_data_file
from gateway.conformance.model import Case, CaseResult, Check, Exchange, RunResult, Step, Suite
from gateway.conformance.samples import Samples
from gateway.conformance.target import FHIR_JSON, Target

Progress = Callable[[CaseResult], None]
_MAX_POLL_WAIT = 5.0


class Runner:
    def __init__(self, target: Target, options: needs.RunOptions, *, client: BackendClient | None = None,
                 progress: Progress | None = None, directory: Path = DEFINITIONS_DIR) -> None:
        self.target = target
        self.options = options
        self.client = client
        self.progress = progress or (lambda _: None)
        self.directory = directory
        self.samples = Samples(target)
        self._loaded_fixtures: set[str] = set()

    def run(self, suites: list[Suite]) -> RunResult:
        started = time.monotonic()
        result = RunResult(self.target.base, datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
        for suite in suites:
            result.descriptions[suite.name] = suite.description
            for fixture in suite.fixtures:
                if fixture not in self._loaded_fixtures:
                    self._loaded_fixtures.add(fixture)
                    self._record(result, self._load_fixture(suite.name, fixture))
            for case in suite.cases:
                for case_result in self._expanded(suite.name, case):
                    self._record(result, case_result)
        result.seconds = time.monotonic() - started
        return result

    def _record(self, result: RunResult, case: CaseResult) -> None:
        result.cases.append(case)
        self.progress(case)

    def _base_vars(self) -> dict[str, Any]:
        endpoint = (self.target.smart or {}).get("token_endpoint")
        return {"base": self.target.base, "uuid": uuid.uuid4().hex, "token": self.target.token,
                "client_id": self.client.client_id if self.client else None, "token_endpoint": endpoint,
                "client_assertion": self.client.assertion(endpoint) if self.client and endpoint else None}

    def _expanded(self, suite: str, case: Case) -> Iterator[CaseResult]:
        if case.for_each is None:
            yield self._case(suite, case, self._base_vars())
            return
        self.samples.refresh()
        try:
            expansions = list(generators.expand(case.for_each, self.target, self.samples))
        except KeyError as exc:
            yield _suite_error(suite, case.id, str(exc))
            return
        for variables in expansions:
            yield self._case(suite, case, {**self._base_vars(), **variables})

    def _case(self, suite: str, case: Case, variables: dict[str, Any]) -> CaseResult:
        started = time.monotonic()
        try:
            case_id = templating.fill(case.id, variables)
            result = CaseResult(suite, case_id, templating.fill(case.title, variables))
            result.skip_reason = self._skip_reason(case, variables)
            if not result.skip_reason:
                variables.update(templating.fill(case.let, variables))
                for number, step in enumerate(case.steps, 1):
                    if self._step(step, number, variables, result) is None:
                        break
        except (templating.MissingVariable, KeyError, ValueError, OSError) as exc:
            result = _suite_error(suite, case.id, f"{type(exc).__name__}: {exc}")
        result.seconds = time.monotonic() - started
        return result

    def _skip_reason(self, case: Case, variables: dict[str, Any]) -> str:
        if case.writes and not self.options.allow_writes:
            return "creates or changes data: run with --allow-writes"
        missing = [name for name in case.requires if variables.get(name) is None]
        if missing:
            return str(variables.get("why") or f"no value for {', '.join(missing)}")
        return needs.unmet(templating.fill(case.needs, variables), self.target, self.options) or ""

    def _step(self, step: Step, number: int, variables: dict[str, Any],
              result: CaseResult) -> httpx.Response | None:
        """Send, poll, check, capture; None when the case cannot go on."""
        request = dict(step.request)
        if "body_file" in request:
            request["body"] = orjson.loads(read_data_file(request.pop("body_file"), self.directory))
        request = templating.fill(request, variables)
        response, exchange = self._send(request)
        polls = 0
        while response is not None and step.poll and self._keep_polling(step.poll, response, polls):
            time.sleep(min(_retry_after(response), float(step.poll.get("max_interval", _MAX_POLL_WAIT))))
            response, exchange = self._send(request)
            polls += 1
        result.exchanges.append(exchange)
        prefix = f"step {number}" + (f" ({step.title})" if step.title else "")
        if response is None:
            result.checks.append(Check(f"{prefix}: request", "fail", exchange.error))
            return None
        checks = assertions.check(templating.fill(step.expect, variables), response)
        for check in checks:
            check.name = f"{prefix}: {check.name}"
        result.checks.extend(checks)
        if any(c.outcome == "fail" for c in checks):
            return None
        for name, rule in templating.fill(step.capture, variables).items():
            value = _capture(rule, response)
            if value is None:
                result.checks.append(Check(f"{prefix}: capture {name}", "fail", f"nothing found for {rule}"))
                return None
            variables[name] = value
        return response

    def _keep_polling(self, poll: dict[str, Any], response: httpx.Response, polls: int) -> bool:
        return response.status_code == int(poll.get("while_status", 202)) and polls < int(poll.get("max_polls", 120))

    def _send(self, request: dict[str, Any]) -> tuple[httpx.Response | None, Exchange]:
        headers = {str(k): str(v) for k, v in (request.get("headers") or {}).items()}
        headers.setdefault("Accept", FHIR_JSON)
        body = request.get("body")
        content = None if body is None else body.encode() if isinstance(body, str) else orjson.dumps(body)
        if content is not None:
            headers.setdefault("Content-Type", FHIR_JSON)
        form = {str(k): str(v) for k, v in request["form"].items()} if "form" in request else None
        path = request.get("url") or request.get("path", "")
        return self.target.send(request.get("method", "GET"), path, headers=headers,
                                params=_query(request.get("query")), content=content, form=form,
                                auth=request.get("auth", True))

    def _load_fixture(self, suite: str, fixture: str) -> CaseResult:
        """A transaction Bundle from conformance/fixtures; every created resource becomes a sample."""
        started = time.monotonic()
        result = CaseResult(suite, f"fixtures/{Path(fixture).stem}", f"load {fixture}")
        if not self.options.allow_writes:
            result.skip_reason = "read-only run: the fixtures are not loaded (--allow-writes); samples come from " \
                                 "the data already on the target"
            return result
        if "transaction" not in self.target.system_interactions:
            result.skip_reason = "the target declares no transaction interaction to load fixtures with"
            return result
        step = Step(request={"method": "POST", "path": "", "body_file": fixture},
                    expect={"status": 200, "fhirpath": ["type = 'transaction-response'"]})
        response = self._step(step, 1, self._base_vars(), result)
        if response is not None:
            bundle = assertions.json_body(response) or {}
            for entry in bundle.get("entry") or []:
                location = (entry.get("response") or {}).get("location", "")
                parts = location.split("/_history")[0].rstrip("/").split("/")
                if len(parts) >= 2:
                    self.samples.remember(parts[-2], parts[-1])
        result.seconds = time.monotonic() - started
        return result


def _suite_error(suite: str, case_id: str, message: str) -> CaseResult:
    result = CaseResult(suite, case_id, case_id)
    result.checks.append(Check("suite definition", "fail", f"the case could not run as written: {message}"))
    return result


def _query(query: Any) -> list[tuple[str, str]] | None:
    if not query:
        return None
    items = query.items() if isinstance(query, dict) else query
    return [(str(k), str(v)) for k, v in items]


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "1")
    return float(value) if value.replace(".", "", 1).isdigit() else 1.0


def _capture(rule: dict[str, Any], response: httpx.Response) -> Any:
    """`{header: Name, regex?: '(group)'}`, `{fhirpath: expr}` (first item) or `{json: /pointer}`."""
    if "header" in rule:
        value = response.headers.get(rule["header"])
        if value is not None and "regex" in rule:
            match = re.search(rule["regex"], value)
            return match.group(1) if match else None
        return value
    body = assertions.json_body(response)
    if body is None:
        return None
    if "fhirpath" in rule:
        found = fhirpath.evaluate(body, rule["fhirpath"])
        return found[0] if found else None
    found_at, value = assertions.pointer(body, rule["json"])
    return value if found_at else None
