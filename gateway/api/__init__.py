"""HTTP: FastAPI routers, thin. Parse the request, ask the layers below, write the answer."""
