"""create_app(settings): wiring only — every decision lives in the layer it belongs to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware

from gateway import __version__
from gateway.access.authenticate import make_authenticator
from gateway.access.gate import Gate
from gateway.api import errors, health
from gateway.api.context import Services
from gateway.api.interactions import (
    capabilities,
    create,
    delete,
    history,
    read,
    transaction,
    update,
)
from gateway.fhir.errors import Issue
from gateway.search import SearchEngine
from gateway.served import STORED_TYPES
from gateway.settings import Settings
from gateway.store import Store


def _no_profile_checks(_resource: dict, _profile: str | None) -> list[Issue]:
    return []


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await Store.open(settings.database_url)
        app.state.services = Services(
            settings=settings,
            store=store,
            gate=Gate(STORED_TYPES),
            authenticate=make_authenticator(settings),
            validate=_no_profile_checks,
            search=SearchEngine(store),
            base_url=settings.base_url.rstrip("/"),
            profiles_for=lambda _type: [],
        )
        try:
            yield
        finally:
            await store.close()

    app = FastAPI(title="Biobank FHIR Gateway", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    errors.install(app)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    for module in (health, capabilities, transaction, history, read, create, update, delete):
        app.include_router(module.router)
    return app
