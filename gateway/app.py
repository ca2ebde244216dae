"""create_app(settings): wiring only — every decision lives in the layer it belongs to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from starlette.middleware.gzip import GZipMiddleware

from gateway import __version__
from gateway.access.authenticate import make_authenticator, trusted_issuers
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
from gateway.authserver import AuthServer, AuthService
from gateway.authserver import router as auth_router
from gateway.authserver.cors import RegisteredOriginsCORS
from gateway.authserver.discovery import capability_security
from gateway.cache import open_cache
from gateway.fhir.errors import Issue
from gateway.runtime import open_store
from gateway.search.engine import SearchEngine
from gateway.served import PROXIED_TYPES, STORED_TYPES
from gateway.settings import Settings


def _no_profile_checks(_resource: dict, _profile: str | None) -> list[Issue]:
    return []


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await open_store(settings)
        cache = open_cache(settings.redis_url, settings.redis_prefix)
        http = httpx.AsyncClient()
        auth = AuthServer(settings, store.db, cache, http)
        await auth.grants.purge()
        verifier = auth.verifier(trusted_issuers(settings, http, cache.resilient()))
        app.state.cache = cache
        app.state.auth = AuthService.build(auth, store.db)
        app.state.services = Services(
            settings=settings,
            store=store,
            gate=Gate(STORED_TYPES | frozenset(PROXIED_TYPES), store),
            authenticate=make_authenticator(settings, verifier),
            validate=_no_profile_checks,
            search=SearchEngine(store),
            base_url=settings.base_url.rstrip("/"),
            profiles_for=lambda _type: [],
            security=capability_security(auth.endpoints),
        )
        try:
            yield
        finally:
            await http.aclose()
            await cache.close()
            await store.close()

    app = FastAPI(title="Biobank FHIR Gateway", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    errors.install(app)
    app.add_middleware(GZipMiddleware, minimum_size=1024)
    app.add_middleware(RegisteredOriginsCORS)
    app.include_router(auth_router)
    for module in (health, capabilities, transaction, history, read, create, update, delete):
        app.include_router(module.router)
    return app
