"""HTTP: FastAPI routers, thin. Parse the request, ask the layers below, write the answer."""

from gateway.api import paths  # noqa: F401  (registers the path convertors the routers use)
