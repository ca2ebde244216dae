"""The EHR proxy fixtures of tests/ehr (a fake EHR behind respx and the gateway's key for it), for
the pseudonym tests of the proxy path (test_pseudonyms_elsewhere.py)."""

from tests.ehr.conftest import dataset, fake_ehr, gateway_key  # noqa: F401
