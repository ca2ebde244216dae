"""The `expect:` vocabulary of suite files, each key turned into one or more Checks.

Why a table of small functions: a suite author adds a key here once and then only writes
data; the report names every check after the key and its argument, so a failure reads as
the expectation that was not met.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from gateway.conformance import fhirpath, profilecheck
from gateway.conformance.model import Check

Body = dict[str, Any] | None
Asserter = Callable[[Any, httpx.Response, Body], list[Check]]


def _ok(name: str, passed: bool, detail: str = "") -> Check:
    return Check(name, "pass" if passed else "fail", "" if passed else detail)


def _status(expected: Any, response: httpx.Response, _: Body) -> list[Check]:
    """`status: 200`, `[200, 201]` or a class such as `4xx`."""
    options = [str(o) for o in (expected if isinstance(expected, list) else [expected])]
    got = str(response.status_code)
    passed = any(o == got or (o.endswith("xx") and o[0] == got[0]) for o in options)
    return [_ok(f"status {' or '.join(map(str, options))}", passed, f"got {got}")]


def _headers(expected: dict[str, Any], response: httpx.Response, _: Body) -> list[Check]:
    """`Name: regex`, or `Name: {present: false}`, `{equals: v}`, `{contains: v}`."""
    checks = []
    for name, rule in expected.items():
        value = response.headers.get(name)
        rule = rule if isinstance(rule, dict) else {"matches": rule}
        if "present" in rule:
            checks.append(_ok(f"header {name} {'present' if rule['present'] else 'absent'}",
                              (value is not None) == bool(rule["present"]), f"{name}: {value!r}"))
        elif value is None:
            checks.append(Check(f"header {name}", "fail", f"{name} is missing"))
        elif "equals" in rule:
            checks.append(_ok(f"header {name} = {rule['equals']}", value == str(rule["equals"]), f"got {value!r}"))
        elif "contains" in rule:
            checks.append(_ok(f"header {name} contains {rule['contains']}", str(rule["contains"]) in value,
                              f"got {value!r}"))
        else:
            checks.append(_ok(f"header {name} ~ {rule['matches']}", re.search(str(rule["matches"]), value) is not None,
                              f"got {value!r}"))
    return checks


def _content_type(pattern: str, response: httpx.Response, _: Body) -> list[Check]:
    value = response.headers.get("content-type", "")
    return [_ok(f"content-type ~ {pattern}", re.search(pattern, value) is not None, f"got {value!r}")]


def _need_body(name: str, body: Body) -> Check | None:
    return None if body is not None else Check(name, "fail", "the response body is not a JSON object")


def _fhirpath(expressions: list[str], _: httpx.Response, body: Body) -> list[Check]:
    """Each expression must evaluate to true on the response body."""
    checks = []
    for expression in expressions:
        name = f"fhirpath {expression}"
        missing = _need_body(name, body)
        if missing:
            checks.append(missing)
            continue
        try:
            result = fhirpath.evaluate(body, expression)
        except ValueError as exc:
            checks.append(Check(name, "fail", str(exc)))
            continue
        checks.append(_ok(name, bool(result) and all(item is not False for item in result), f"evaluated to {result}"))
    return checks


def pointer(body: Any, pointer: str) -> tuple[bool, Any]:
    """RFC 6901: (found, value)."""
    node = body
    for raw in pointer.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        elif isinstance(node, dict) and token in node:
            node = node[token]
        else:
            return False, None
    return True, node


def _json(rules: list[dict[str, Any]], _: httpx.Response, body: Body) -> list[Check]:
    """`{pointer: /a/0, exists: true | equals: v | contains: v | matches: regex}`."""
    checks = []
    for rule in rules:
        where = rule["pointer"]
        found, value = pointer(body, where)
        if "exists" in rule:
            checks.append(_ok(f"json {where} {'exists' if rule['exists'] else 'absent'}", found == rule["exists"],
                              f"value: {value!r}"))
        elif not found:
            checks.append(Check(f"json {where}", "fail", f"{where} is missing"))
        elif "equals" in rule:
            checks.append(_ok(f"json {where} = {rule['equals']!r}", value == rule["equals"], f"got {value!r}"))
        elif "contains" in rule:
            checks.append(_ok(f"json {where} contains {rule['contains']!r}",
                              isinstance(value, list | str) and rule["contains"] in value, f"got {value!r}"))
        else:
            checks.append(_ok(f"json {where} ~ {rule['matches']}",
                              re.search(rule["matches"], str(value)) is not None, f"got {value!r}"))
    return checks


def _outcome(wanted: bool, _: httpx.Response, body: Body) -> list[Check]:
    """The body is an OperationOutcome with at least one issue (every FHIR error must be)."""
    is_outcome = bool(body) and body.get("resourceType") == "OperationOutcome" and bool(body.get("issue"))
    shown = body.get("resourceType") if body else "no JSON body"
    return [_ok("body is an OperationOutcome" if wanted else "body is not an OperationOutcome",
                is_outcome == bool(wanted), f"got {shown}")]


def _entry_ids(body: Body) -> list[str]:
    entries = (body or {}).get("entry") or []
    return [str((e.get("resource") or {}).get("id")) for e in entries
            if (e.get("search") or {}).get("mode", "match") != "outcome" and e.get("resource")]


def _bundle_contains(id_: str, _: httpx.Response, body: Body) -> list[Check]:
    return [_ok(f"bundle has {id_}", id_ in _entry_ids(body), f"entries: {_entry_ids(body)[:20]}")]


def _bundle_excludes(id_: str, _: httpx.Response, body: Body) -> list[Check]:
    return [_ok(f"bundle has no {id_}", id_ not in _entry_ids(body) and body is not None,
                f"entries: {_entry_ids(body)[:20]}")]


def _search_not_ignored(param: str, _: httpx.Response, body: Body) -> list[Check]:
    """A declared parameter the server ignored (named in an outcome entry, or dropped from the
    self link, which FHIR says lists the parameters actually used) is a false declaration."""
    name = f"search parameter {param} was used"
    missing = _need_body(name, body)
    if missing:
        return [missing]
    code = param.split(":")[0]
    for entry in body.get("entry") or []:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "OperationOutcome":
            text = orjson.dumps(resource).decode()
            if re.search(rf"\b{re.escape(code)}\b", text):
                return [Check(name, "fail", f"the server says it did not use {code}: {text[:500]}")]
    selfs = [link.get("url", "") for link in body.get("link") or [] if link.get("relation") == "self"]
    if selfs and not re.search(rf"(^|&){re.escape(code)}[:=]", httpx.URL(selfs[0]).query.decode()):
        return [Check(name, "fail", f"the self link leaves {code} out (FHIR: it lists the parameters used): "
                      f"{selfs[0]}")]
    return [Check(name, "pass")]


def _ndjson_type(type_: str, response: httpx.Response, _: Body) -> list[Check]:
    """Every line of an NDJSON file is a JSON resource of `type_`."""
    bad = []
    lines = [line for line in response.text.splitlines() if line.strip()]
    for number, line in enumerate(lines, 1):
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad.append(f"line {number} is not JSON")
            continue
        if not isinstance(item, dict) or item.get("resourceType") != type_:
            bad.append(f"line {number} is not a {type_}")
    return [_ok(f"every NDJSON line is a {type_} ({len(lines)} lines)", not bad and bool(lines),
                "; ".join(bad[:10]) or "the file is empty")]


def _profile_valid(_: Any, __: httpx.Response, body: Body) -> list[Check]:
    """Every resource in the body (itself, or each Bundle entry) passes the biobank profiles."""
    checker, why = profilecheck.validator()
    if checker is None:
        return [Check("resources conform to profiles/", "skip", why)]
    if not body:
        return [Check("resources conform to profiles/", "fail", "the response body is not a JSON object")]
    resources = [e["resource"] for e in body.get("entry") or [] if e.get("resource")] \
        if body.get("resourceType") == "Bundle" else [body]
    resources = [r for r in resources if r.get("resourceType") != "OperationOutcome"]
    if not resources:
        return [Check("resources conform to profiles/", "skip", "the response holds no resource to validate")]
    checks = []
    for resource in resources:
        found = profilecheck.problems(resource)
        checks.append(_ok(f"{resource.get('resourceType')}/{resource.get('id')} conforms to profiles/", not found,
                          "; ".join(found[:10])))
    return checks


ASSERTIONS: dict[str, Asserter] = {
    "status": _status, "headers": _headers, "content_type": _content_type, "fhirpath": _fhirpath, "json": _json,
    "outcome": _outcome, "bundle_contains": _bundle_contains, "bundle_excludes": _bundle_excludes,
    "search_not_ignored": _search_not_ignored, "ndjson_type": _ndjson_type, "profile_valid": _profile_valid,
}


def json_body(response: httpx.Response) -> Body:
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def check(expect: dict[str, Any], response: httpx.Response) -> list[Check]:
    body = json_body(response)
    checks: list[Check] = []
    for key, argument in expect.items():
        asserter = ASSERTIONS.get(key)
        if asserter is None:
            checks.append(Check(f"expect {key}", "fail", f"unknown expectation {key!r}; known: {sorted(ASSERTIONS)}"))
        else:
            checks.extend(asserter(argument, response, body))
    return checks
