"""When the EHR fails, the client gets an OperationOutcome with the status that says how —
and the gateway's own resources keep being served."""

from __future__ import annotations

import httpx
import pytest

from tests.ehr.conftest import INTERNAL, FakeEhr, Gateway

NO_CACHE = {"Cache-Control": "no-cache"}


async def conditions(gateway: Gateway) -> httpx.Response:
    return await gateway.as_(INTERNAL).client.get("/fhir/Condition", params={"patient": "S1"}, headers=NO_CACHE)


@pytest.fixture
async def warm(gateway: Gateway) -> Gateway:
    """Discovery, token and the S1 translation done, so faults hit the search itself."""
    assert (await conditions(gateway)).status_code == 200
    return gateway


def assert_outcome(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == code
    assert "ehr.test" not in r.text


async def test_unreachable_ehr_is_502_and_specimens_are_still_served(warm: Gateway, fake_ehr: FakeEhr) -> None:
    fake_ehr.fail("/fhir/Condition", *[httpx.ConnectError("connection refused")] * 3)
    assert_outcome(await conditions(warm), 502, "transient")
    specimen = await warm.client.get("/fhir/Specimen/SPS1")
    assert specimen.status_code == 200 and specimen.json()["id"] == "SPS1"


async def test_open_breaker_is_503_with_retry_after(warm: Gateway, fake_ehr: FakeEhr) -> None:
    warm.app.state.ehr.client.breaker.failures = 2
    fake_ehr.fail("/fhir/Condition", *[httpx.ConnectError("connection refused")] * 6)
    assert_outcome(await conditions(warm), 502, "transient")
    assert_outcome(await conditions(warm), 502, "transient")
    calls = len(fake_ehr.calls("/fhir/Condition"))
    refused = await conditions(warm)
    assert_outcome(refused, 503, "transient")
    assert 1 <= int(refused.headers["retry-after"]) <= 30
    assert len(fake_ehr.calls("/fhir/Condition")) == calls
    assert (await warm.client.get("/fhir/Specimen/SPS1")).status_code == 200


async def test_cached_answers_are_served_while_the_breaker_is_open(warm: Gateway, fake_ehr: FakeEhr) -> None:
    warm.app.state.ehr.client.breaker.failures = 1
    fake_ehr.fail("/fhir/Condition", *[httpx.ConnectError("connection refused")] * 3)
    assert_outcome(await conditions(warm), 502, "transient")
    cached = await warm.client.get("/fhir/Condition", params={"patient": "S1"})
    assert cached.status_code == 200 and cached.headers["x-cache"] == "hit"


async def test_timeout_is_504(warm: Gateway, fake_ehr: FakeEhr) -> None:
    fake_ehr.fail("/fhir/Condition", httpx.ReadTimeout("no answer"))
    assert_outcome(await conditions(warm), 504, "timeout")


async def test_upstream_5xx_is_retried_then_502(warm: Gateway, fake_ehr: FakeEhr) -> None:
    fake_ehr.fail("/fhir/Condition", httpx.Response(503))
    assert (await conditions(warm)).status_code == 200  # one retry was enough
    fake_ehr.fail("/fhir/Condition", *[httpx.Response(500, text="java.lang.NullPointerException at ehr.test")] * 3)
    assert_outcome(await conditions(warm), 502, "transient")


async def test_upstream_4xx_is_mapped_with_a_sanitised_diagnostic(warm: Gateway, fake_ehr: FakeEhr) -> None:
    leak = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid",
                                                           "diagnostics": "MRN MGH-7300037 unknown at ehr.test"}]}
    fake_ehr.fail("/fhir/Condition", httpx.Response(400, json=leak))
    r = await conditions(warm)
    assert_outcome(r, 400, "invalid")
    assert "MGH-" not in r.text
    assert_outcome(await warm.client.get("/fhir/Condition/unknown-id"), 404, "not-found")


@pytest.mark.parametrize("answer", [
    httpx.Response(200, text="<html>Service unavailable</html>"),
    httpx.Response(200, json={"resourceType": "Patient", "id": "p"}),
    httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": "nope"}),
    httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset",
                              "entry": [{"resource": {"resourceType": "Condition", "id": "bad id!"}}]}),
    httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset", "entry": [],
                              "link": [{"relation": "next", "url": "http://evil.test/steal"}]}),
], ids=["not-json", "wrong-type", "entry-not-a-list", "invalid-id", "foreign-next-link"])
async def test_garbage_from_the_ehr_is_502(warm: Gateway, fake_ehr: FakeEhr, answer: httpx.Response) -> None:
    fake_ehr.fail("/fhir/Condition", answer)
    assert_outcome(await conditions(warm), 502, "processing")


async def test_a_read_answering_another_resource_is_502(warm: Gateway, fake_ehr: FakeEhr) -> None:
    fake_ehr.fail("/fhir/Condition/c1", httpx.Response(200, json={"resourceType": "Condition", "id": "c2"}))
    assert_outcome(await warm.client.get("/fhir/Condition/c1"), 502, "processing")


async def test_an_expired_ehr_token_is_refreshed_transparently(warm: Gateway, fake_ehr: FakeEhr) -> None:
    fake_ehr.upstream.tokens.clear()  # the EHR forgets every token it issued
    tokens_before = len(fake_ehr.calls("/auth/token"))
    assert (await conditions(warm)).status_code == 200
    assert len(fake_ehr.calls("/auth/token")) == tokens_before + 1


async def test_proxy_off_without_an_ehr(app_client: httpx.AsyncClient) -> None:
    r = await app_client.get("/fhir/Condition", params={"patient": "S1"})
    assert r.status_code == 404 and "GATEWAY_EHR_BASE_URL" in r.json()["issue"][0]["diagnostics"]
