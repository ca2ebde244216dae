"""The ASGI application object uvicorn imports (each worker builds its own from the environment)."""

from gateway.app import create_app

app = create_app()
