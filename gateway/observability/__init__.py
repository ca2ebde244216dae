"""What the gateway tells its operators: JSON logs, Prometheus metrics, one log line per request.

`configure_logging` once per process, `ObserveRequests` outermost in the ASGI stack,
`identified` around the authenticator so the request line names the client, and the
recording functions of `gateway.observability.metrics` wherever something worth counting
happens (docs/deploying.md lists the metrics).
"""

from gateway.observability.logs import configure_logging
from gateway.observability.requests import ObserveRequests, identified

__all__ = ["ObserveRequests", "configure_logging", "identified"]
