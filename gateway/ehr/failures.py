"""Upstream failures as the OperationOutcomes a client of the gateway sees.

Diagnostics never repeat what the EHR said: its messages may carry its URLs, its ids or a
patient's MRN. They name the failure and what the client can do about it.
"""

from __future__ import annotations

import math

from gateway.fhir.errors import FhirError


class UpstreamFailure(FhirError):
    """A failure that counts against the EHR's availability (the circuit breaker's input)."""


def unreachable(why: str) -> UpstreamFailure:
    return UpstreamFailure.of(502, "transient", f"The hospital EHR could not be reached ({why}); try again later")


def bad_gateway(why: str) -> UpstreamFailure:
    return UpstreamFailure.of(502, "transient", f"The hospital EHR failed to answer ({why}); try again later")


def timed_out(seconds: float) -> UpstreamFailure:
    return UpstreamFailure.of(504, "timeout", f"The hospital EHR did not answer within {seconds:g} s; try again later")


def circuit_open(retry_after: float) -> FhirError:
    seconds = max(1, math.ceil(retry_after))
    return FhirError.of(503, "transient", f"The hospital EHR is unavailable; the gateway retries it in {seconds} s",
                        headers={"Retry-After": str(seconds)})


def throttled(retry_after: str | None) -> FhirError:
    seconds = retry_after if retry_after and retry_after.isdigit() else "5"
    return FhirError.of(503, "throttled", "The hospital EHR is busy; try again later",
                        headers={"Retry-After": seconds})


def garbage(why: str) -> FhirError:
    """The EHR answered, but not with FHIR the gateway can pass on (not counted by the breaker)."""
    return FhirError.of(502, "processing", f"The hospital EHR sent an unusable answer: {why}")


def refused_credentials() -> FhirError:
    return FhirError.of(502, "security", "The hospital EHR refused the gateway's credentials; "
                        "the gateway's EHR client registration needs attention")


_CLIENT_ERRORS = {
    400: ("invalid", "The hospital EHR rejected the query; check the search parameters"),
    403: ("forbidden", "The hospital EHR does not allow this request"),
    404: ("not-found", "The hospital EHR has no such resource"),
    405: ("not-supported", "The hospital EHR does not support this interaction"),
    410: ("deleted", "The resource was deleted in the hospital EHR"),
    422: ("invalid", "The hospital EHR could not process the query; check the search parameters"),
}


def client_error(status: int) -> FhirError:
    """An upstream 4xx passed on with its status (403 -> 403, 404 -> 404, ...) and a diagnostic of our own."""
    code, text = _CLIENT_ERRORS.get(status, ("processing", "The hospital EHR refused the request"))
    return FhirError.of(status if status in _CLIENT_ERRORS else 400, code, f"{text} (EHR status {status})")
