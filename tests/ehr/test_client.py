"""The EHR client on its own, against respx: retries with backoff, the deadline, failure
mapping, the circuit breaker (also shared through Redis) and SMART backend-services tokens."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
import respx

from gateway.cache import MemoryCache, RedisCache
from gateway.ehr.auth import BackendAuth
from gateway.ehr.breaker import CircuitBreaker
from gateway.ehr.client import EhrClient
from gateway.ehr.config import EhrConfig
from gateway.ehr.discovery import Discovery
from gateway.fhir.errors import FhirError
from tests.ehr.conftest import CLIENT_ID, EHR, GatewayKey

TOKEN_URL = "http://auth.ehr.test/token"
CONDITION = {"resourceType": "Condition", "id": "c1"}


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(clock: Clock, sleeps: Sleeps, failures: int = 5, retries: int = 2,
                cache: MemoryCache | RedisCache | None = None) -> EhrClient:
    config = EhrConfig(EHR, "http://gw.test/fhir", timeout=2.0, retries=retries, backoff=0.1,
                       breaker_failures=failures, breaker_reset=30.0)
    breaker = CircuitBreaker(cache or MemoryCache(), failures, 30.0, clock=clock)
    return EhrClient(config, breaker, sleep=sleeps, jitter=lambda: 1.0)


@pytest.fixture
async def client() -> AsyncIterator[EhrClient]:
    c = make_client(Clock(), Sleeps())
    yield c
    await c.aclose()


async def failure(call: object) -> FhirError:
    with pytest.raises(FhirError) as caught:
        await call  # type: ignore[misc]
    return caught.value


@respx.mock
async def test_5xx_is_retried_with_growing_backoff_then_succeeds() -> None:
    sleeps = Sleeps()
    client = make_client(Clock(), sleeps)
    route = respx.get(f"{EHR}/Condition/c1").mock(side_effect=[
        httpx.Response(503), httpx.Response(502), httpx.Response(200, json=CONDITION)])
    answer = await client.get("Condition/c1")
    assert answer.body == CONDITION and route.call_count == 3
    assert sleeps == [0.1, 0.2]


@respx.mock
async def test_jitter_draws_each_wait_below_the_exponential_bound() -> None:
    sleeps = Sleeps()
    config = EhrConfig(EHR, "http://gw.test/fhir", retries=3, backoff=0.1)
    client = EhrClient(config, CircuitBreaker(MemoryCache()), sleep=sleeps, jitter=iter([0.5, 0.25, 0.9]).__next__)
    respx.get(f"{EHR}/Condition/c1").mock(return_value=httpx.Response(500))
    assert (await failure(client.get("Condition/c1"))).status == 502
    assert sleeps == pytest.approx([0.05, 0.05, 0.36])


@respx.mock
async def test_unreachable_ehr_is_502_after_retries(client: EhrClient) -> None:
    route = respx.get(f"{EHR}/Condition/c1").mock(side_effect=httpx.ConnectError("refused"))
    error = await failure(client.get("Condition/c1"))
    assert error.status == 502 and error.issues[0].code == "transient" and route.call_count == 3


@respx.mock
async def test_read_timeout_is_504_and_not_retried(client: EhrClient) -> None:
    route = respx.get(f"{EHR}/Condition/c1").mock(side_effect=httpx.ReadTimeout("slow"))
    error = await failure(client.get("Condition/c1"))
    assert error.status == 504 and error.issues[0].code == "timeout" and route.call_count == 1


@respx.mock
async def test_connect_timeouts_are_retried_then_504(client: EhrClient) -> None:
    route = respx.get(f"{EHR}/Condition/c1").mock(side_effect=httpx.ConnectTimeout("syn lost"))
    assert (await failure(client.get("Condition/c1"))).status == 504 and route.call_count == 3


@pytest.mark.parametrize(("upstream", "status", "code"), [
    (400, 400, "invalid"), (403, 403, "forbidden"), (404, 404, "not-found"), (410, 410, "deleted"),
    (422, 422, "invalid"), (418, 400, "processing")])
async def test_upstream_4xx_is_passed_on_sanitised_and_not_retried(client: EhrClient, upstream: int, status: int,
                                                                   code: str) -> None:
    leak = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid",
                                                           "diagnostics": f"MRN MGH-0012345 at {EHR}/Patient/e9"}]}
    with respx.mock:
        route = respx.get(f"{EHR}/Condition/c1").mock(return_value=httpx.Response(upstream, json=leak))
        error = await failure(client.get("Condition/c1"))
    assert (error.status, error.issues[0].code, route.call_count) == (status, code, 1)
    assert "MGH-" not in str(error) and "ehr.test" not in str(error)


@respx.mock
async def test_throttling_upstream_is_503_with_retry_after(client: EhrClient) -> None:
    respx.get(f"{EHR}/Condition/c1").mock(return_value=httpx.Response(429, headers={"Retry-After": "7"}))
    error = await failure(client.get("Condition/c1"))
    assert error.status == 503 and error.headers["Retry-After"] == "7"


@pytest.mark.parametrize("body", [b"<html>oops</html>", b"[1, 2]", b""])
async def test_garbage_is_502(client: EhrClient, body: bytes) -> None:
    with respx.mock:
        respx.get(f"{EHR}/Condition/c1").mock(return_value=httpx.Response(200, content=body))
        error = await failure(client.get("Condition/c1"))
    assert error.status == 502 and error.issues[0].code == "processing"


async def test_links_outside_the_ehr_base_are_never_fetched(client: EhrClient) -> None:
    assert client.url("Condition?_offset=5") == f"{EHR}/Condition?_offset=5"
    assert client.url(f"{EHR}/Condition?_offset=5") == f"{EHR}/Condition?_offset=5"
    for bad in ("http://elsewhere.test/fhir/Condition", "/etc/passwd", "http://ehr.test/fhirx/Condition"):
        with pytest.raises(FhirError):
            client.url(bad)


@respx.mock
async def test_breaker_opens_after_consecutive_failures_and_refuses_without_calling() -> None:
    clock = Clock()
    client = make_client(clock, Sleeps(), failures=3, retries=0)
    route = respx.get(f"{EHR}/Condition/c1").mock(side_effect=httpx.ConnectError("refused"))
    for _ in range(3):
        assert (await failure(client.get("Condition/c1"))).status == 502
    refused = await failure(client.get("Condition/c1"))
    assert refused.status == 503 and refused.headers["Retry-After"] == "30" and route.call_count == 3
    assert await client.breaker.state() == "open"
    clock.now += 10
    assert (await failure(client.get("Condition/c1"))).headers["Retry-After"] == "20"


@respx.mock
async def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    client = make_client(Clock(), Sleeps(), failures=2, retries=0)
    respx.get(f"{EHR}/Condition/c1").mock(side_effect=[
        httpx.ConnectError("x"), httpx.Response(200, json=CONDITION), httpx.ConnectError("x"),
        httpx.Response(200, json=CONDITION)])
    for _ in range(4):
        try:
            await client.get("Condition/c1")
        except FhirError as error:
            assert error.status == 502
    assert await client.breaker.state() == "closed"


@respx.mock
async def test_half_open_probe_closes_the_breaker_on_success_or_reopens_it() -> None:
    clock = Clock()
    client = make_client(clock, Sleeps(), failures=1, retries=0)
    route = respx.get(f"{EHR}/Condition/c1").mock(side_effect=[
        httpx.ConnectError("down"), httpx.ConnectError("still down"), httpx.Response(200, json=CONDITION)])
    await failure(client.get("Condition/c1"))
    clock.now += 31
    assert await client.breaker.state() == "half-open"
    assert (await failure(client.get("Condition/c1"))).status == 502  # the probe fails: open again
    assert (await failure(client.get("Condition/c1"))).status == 503
    clock.now += 31
    assert (await client.get("Condition/c1")).body == CONDITION  # the probe succeeds: closed
    assert await client.breaker.state() == "closed" and route.call_count == 3


async def test_only_one_caller_probes_a_half_open_breaker() -> None:
    clock = Clock()
    breaker = CircuitBreaker(MemoryCache(), failures=1, reset=30.0, clock=clock)
    await breaker.failed(probe=False)
    clock.now += 31
    assert await breaker.enter() is True
    with pytest.raises(Exception, match="circuit open"):
        await breaker.enter()


async def test_breaker_state_is_shared_by_instances_through_redis(redis_url: str, redis_prefix: str) -> None:
    clock = Clock()
    caches = [RedisCache(redis_url, redis_prefix), RedisCache(redis_url, redis_prefix)]
    try:
        first, second = (make_client(clock, Sleeps(), failures=2, retries=0, cache=c) for c in caches)
        with respx.mock:
            respx.get(f"{EHR}/Condition/c1").mock(side_effect=httpx.ConnectError("down"))
            await failure(first.get("Condition/c1"))
            await failure(second.get("Condition/c1"))  # the second consecutive failure, on another instance
            assert (await failure(first.get("Condition/c1"))).status == 503
    finally:
        for cache in caches:
            await cache.close()


def with_auth(client: EhrClient, key: GatewayKey, clock: Clock) -> BackendAuth:
    async def token_url() -> str:
        return TOKEN_URL

    client.auth = BackendAuth(CLIENT_ID, key.pem.read_bytes(), "system/*.rs", token_url, client.post_form,
                              clock=clock)
    return client.auth


def token_responses(route: respx.Route) -> None:
    counter = iter(range(1, 100))
    route.mock(side_effect=lambda _: httpx.Response(200, json={"access_token": f"t{next(counter)}",
                                                               "token_type": "bearer", "expires_in": 300}))


@respx.mock
async def test_backend_services_token_is_cached_until_shortly_before_expiry(gateway_key: GatewayKey) -> None:
    clock = Clock()
    client = make_client(clock, Sleeps())
    with_auth(client, gateway_key, clock)
    token_route = respx.post(TOKEN_URL)
    token_responses(token_route)
    data = respx.get(f"{EHR}/Condition/c1").mock(return_value=httpx.Response(200, json=CONDITION))
    await client.get("Condition/c1")
    await client.get("Condition/c1")
    assert token_route.call_count == 1 and data.calls[-1].request.headers["authorization"] == "Bearer t1"
    form = dict(x.split("=", 1) for x in token_route.calls[0].request.content.decode().split("&"))
    assert form["grant_type"] == "client_credentials" and form["scope"] == "system%2F%2A.rs"
    assertion = form["client_assertion"]
    public = jwt.PyJWK(gateway_key.jwks["keys"][0])
    claims = jwt.decode(assertion, public, algorithms=["RS384"], audience=TOKEN_URL)
    assert claims["iss"] == claims["sub"] == CLIENT_ID and claims["exp"] - claims["iat"] <= 300
    assert jwt.get_unverified_header(assertion)["kid"] == gateway_key.jwks["keys"][0]["kid"]
    clock.now += 280  # within the last 30 s of a 300 s token: a new one
    await client.get("Condition/c1")
    assert token_route.call_count == 2 and data.calls[-1].request.headers["authorization"] == "Bearer t2"


@respx.mock
async def test_a_401_refreshes_the_token_once_and_retries(gateway_key: GatewayKey) -> None:
    client = make_client(Clock(), Sleeps())
    with_auth(client, gateway_key, Clock())
    token_route = respx.post(TOKEN_URL)
    token_responses(token_route)
    data = respx.get(f"{EHR}/Condition/c1").mock(side_effect=[httpx.Response(401), httpx.Response(200, json=CONDITION)])
    assert (await client.get("Condition/c1")).body == CONDITION
    assert token_route.call_count == 2
    assert [c.request.headers["authorization"] for c in data.calls] == ["Bearer t1", "Bearer t2"]


@respx.mock
async def test_a_second_401_is_a_502_about_the_gateways_credentials(gateway_key: GatewayKey) -> None:
    client = make_client(Clock(), Sleeps())
    with_auth(client, gateway_key, Clock())
    token_responses(respx.post(TOKEN_URL))
    data = respx.get(f"{EHR}/Condition/c1").mock(return_value=httpx.Response(401))
    error = await failure(client.get("Condition/c1"))
    assert error.status == 502 and error.issues[0].code == "security" and data.call_count == 2
    assert await client.breaker.state() == "closed"  # the EHR is up: not a breaker failure


@respx.mock
async def test_a_refused_client_assertion_is_a_502(gateway_key: GatewayKey) -> None:
    client = make_client(Clock(), Sleeps())
    with_auth(client, gateway_key, Clock())
    respx.post(TOKEN_URL).mock(return_value=httpx.Response(401, json={"error": "invalid_client"}))
    respx.get(f"{EHR}/Condition/c1").mock(return_value=httpx.Response(200, json=CONDITION))
    assert (await failure(client.get("Condition/c1"))).issues[0].code == "security"


@respx.mock
async def test_discovery_reads_the_token_endpoint_and_search_parameters_once(client: EhrClient) -> None:
    smart = respx.get(f"{EHR}/.well-known/smart-configuration").mock(
        return_value=httpx.Response(200, json={"token_endpoint": TOKEN_URL}))
    metadata = respx.get(f"{EHR}/metadata").mock(return_value=httpx.Response(200, json={
        "resourceType": "CapabilityStatement", "rest": [{"mode": "server", "searchParam": [{"name": "_id"}],
                                                         "resource": [{"type": "Condition", "searchParam": [
                                                             {"name": "patient"}, {"name": "code"}]}]}]}))
    discovery = Discovery(client)
    assert await discovery.token_endpoint() == TOKEN_URL
    assert await discovery.search_params("Condition") == {"patient", "code", "_id"}
    assert await discovery.search_params("Observation") == {"_id"}
    assert smart.call_count == 1 and metadata.call_count == 1
