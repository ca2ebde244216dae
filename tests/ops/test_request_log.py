"""The request line: one JSON object per request with the request id (the caller's, or a new
one), the client, the interaction, status and duration — and never the query string."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from pathlib import Path

import pytest
import structlog

from gateway.observability.logs import configure_logging, write_line
from tests.access.corpus import MRN
from tests.ops.test_limits import gateway


def request_lines(out: str) -> list[dict]:
    return [entry for entry in map(json.loads, filter(None, out.splitlines())) if entry.get("event") == "request"]


async def test_request_id_is_echoed_and_logged_with_client_interaction_status_and_duration(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with gateway(tmp_path) as client:
        capsys.readouterr()
        given = await client.get("/fhir/Patient", params={"identifier": f"{MRN}|MGH-7300001"},
                                 headers={"X-Request-ID": "ehr-7f3a.1"})
        made = await client.get("/fhir/Patient/x", headers={"X-Request-ID": "not an id; <script>"})
    assert given.headers["x-request-id"] == "ehr-7f3a.1"
    assert made.headers["x-request-id"] != "not an id; <script>" and len(made.headers["x-request-id"]) == 32
    out = capsys.readouterr().out
    first, second = request_lines(out)
    assert first["request_id"] == "ehr-7f3a.1" and second["request_id"] == made.headers["x-request-id"]
    assert first | {"duration_ms": 0, "timestamp": ""} == {
        "event": "request", "method": "GET", "interaction": "search-type", "route": "/fhir/{type}", "type": "Patient",
        "status": 200, "client_id": "dev", "request_id": "ehr-7f3a.1", "duration_ms": 0, "level": "info",
        "logger": "gateway.request", "timestamp": ""}
    assert "MGH-" not in out and "identifier" not in out


async def test_an_unexpected_error_is_logged_as_500_with_its_request_id(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with gateway(tmp_path) as client:
        async def broken(_request: object) -> None:
            raise RuntimeError("store exploded")

        client.app.state.services.authenticate = broken  # type: ignore[attr-defined]
        capsys.readouterr()
        answer = await client.get("/fhir/Patient/x", headers={"X-Request-ID": "boom-1"})
    assert answer.status_code == 500
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert {(e["event"], e["request_id"]) for e in lines} >= {("unhandled error", "boom-1"), ("request", "boom-1")}
    assert [e["status"] for e in lines if e["event"] == "request"] == [500]


async def test_log_lines_are_written_in_order_once_the_event_loop_step_ends(capsys: pytest.CaptureFixture[str]) -> None:
    """Request lines and every other line share one buffer, written once per loop step (one write(2) for
    the requests of a step even when PYTHONUNBUFFERED makes stdout write through), in the order logged."""
    configure_logging()
    capsys.readouterr()
    logging.getLogger("gateway.test").warning("first")
    write_line(logging.getLogger("gateway.request"), "second", {"status": 200})
    structlog.get_logger("gateway.test").warning("third")
    assert capsys.readouterr().out == ""
    await asyncio.sleep(0)
    assert [json.loads(line)["event"] for line in capsys.readouterr().out.splitlines()] == ["first", "second", "third"]


def test_a_line_logged_outside_an_event_loop_is_written_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging()
    capsys.readouterr()
    logging.getLogger("gateway.test").warning("at start-up")
    assert json.loads(capsys.readouterr().out)["event"] == "at start-up"


def test_lines_from_threads_and_the_event_loop_are_each_written_once(capsys: pytest.CaptureFixture[str]) -> None:
    """Threads flush at once, the loop once per step, both from the one buffer: no line twice, none lost."""
    configure_logging()
    capsys.readouterr()
    log = logging.getLogger("gateway.test")

    def burst(worker: int) -> None:
        for n in range(300):
            log.warning("line %d-%d", worker, n)

    async def requests() -> None:
        for n in range(300):
            write_line(logging.getLogger("gateway.request"), f"request {n}", {})
            await asyncio.sleep(0)

    threads = [threading.Thread(target=burst, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    asyncio.run(requests())
    for thread in threads:
        thread.join()
    written = [json.loads(line)["event"] for line in capsys.readouterr().out.splitlines()]
    assert sorted(written) == sorted([*(f"line {w}-{n}" for w in range(4) for n in range(300)),
                                      *(f"request {n}" for n in range(300))])
