"""A small FHIR R4 server standing in for the hospital EHR in tests and benchmarks (not the gateway).

`python -m tests.ehr.upstream --port P --patients N [--jwks FILE --client-id ID]` serves a
deterministic synthetic EHR record for N patients (found by MRN), SMART discovery, a
backend-services token endpoint, paging with next links and ETags.
"""
