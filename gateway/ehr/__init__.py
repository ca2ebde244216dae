"""The hospital EHR's FHIR server, proxied (INTERFACES.md, "Resources proxied from the EHR").

`EhrService` is what the API layer uses; the modules beside it each hold one concern:
config, client (HTTP, retries, deadline), breaker, auth (SMART backend services),
discovery, query (parameter checks), patients (MRN translation), answers (cache),
rewrite (EHR ids and URLs out), pages (page tokens), keys, failures.
"""

from gateway.ehr.config import EhrConfig
from gateway.ehr.query import ProxyQuery, parse
from gateway.ehr.service import Asker, EhrService, Proxied, ProxiedPage

__all__ = ["Asker", "EhrConfig", "EhrService", "Proxied", "ProxiedPage", "ProxyQuery", "parse"]
