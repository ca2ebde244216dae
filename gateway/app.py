"""create_app(settings): wiring only — every decision lives in the layer it belongs to."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from gateway import __version__
from gateway.access.audit import AuditLog
from gateway.access.authenticate import make_authenticator, trusted_issuers
from gateway.access.gate import Gate
from gateway.access.pseudonyms import Pseudonyms, pseudonym_secret
from gateway.api import errors, health
from gateway.api.audit import AuditMiddleware
from gateway.api.compression import Gzip
from gateway.api.context import Operation, Services
from gateway.api.interactions import (
    availability,
    capabilities,
    create,
    delete,
    destruction_list,
    ehr_proxy,
    export,
    history,
    read,
    recontact_list,
    search,
    transaction,
    update,
    validate,
)
from gateway.api.limits import BodySizeLimit, rate_limited
from gateway.authserver import AuthServer, AuthService
from gateway.authserver import router as auth_router
from gateway.authserver.cors import RegisteredOriginsCORS
from gateway.authserver.discovery import capability_security
from gateway.bulk.service import Exports
from gateway.cache import open_cache
from gateway.ehr import EhrConfig, EhrService
from gateway.observability import ObserveRequests, configure_logging, identified
from gateway.profiles import ProfileValidator
from gateway.runtime import open_store, publish_conformance, settle_heap, supported_profiles, unsettle_heap
from gateway.search.engine import SearchEngine
from gateway.served import PROXIED_TYPES, STORED_TYPES
from gateway.settings import Settings

OPERATIONS = (availability, destruction_list, recontact_list, validate)
"""Operation modules: each has `router` and `OPERATION` (declared in the CapabilityStatement)."""
BULK = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition"
EXPORT_OPERATIONS = (Operation("export", f"{BULK}/export"), Operation("export", f"{BULK}/patient-export", ("Patient",)),
                     Operation("export", f"{BULK}/group-export", ("Group",)))
EHR_SUMMARY = Operation("ehr-summary", "https://biobank.massgeneral.org/fhir/OperationDefinition/ehr-summary",
                        ("Patient",))


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level)
    secret = pseudonym_secret(settings)  # refuses to start when the switch is on without a secret

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await open_store(settings)
        validator = ProfileValidator.load(settings.profiles_dir)
        await publish_conformance(store, validator)
        cache = open_cache(settings.redis_url, settings.redis_prefix)
        http = httpx.AsyncClient()
        pseudonyms = Pseudonyms(secret, store.db) if secret else None
        auth = AuthServer(settings, store.db, cache, http, pseudonyms)
        auth.listen()
        await auth.grants.purge()
        verifier = auth.verifier(trusted_issuers(settings, http, cache.resilient()))
        app.state.cache = cache
        app.state.auth = AuthService.build(auth, store.db)
        app.state.services = Services(
            settings=settings,
            store=store,
            gate=Gate(STORED_TYPES | frozenset(PROXIED_TYPES), store, pseudonyms),
            authenticate=rate_limited(identified(make_authenticator(settings, verifier)), cache.resilient(),
                                      settings.rate_limit),
            validate=validator.validate,
            search=SearchEngine(store, base_url=settings.base_url.rstrip("/"), default_count=settings.default_count,
                                max_count=settings.max_count),
            base_url=settings.base_url.rstrip("/"),
            profiles_for=supported_profiles(validator),
            security=capability_security(auth.endpoints),
            operations=[*(module.OPERATION for module in OPERATIONS), *EXPORT_OPERATIONS,
                        *([EHR_SUMMARY] if settings.ehr_base_url else [])],
        )
        app.state.exports = await Exports.start(store, app.state.services.gate, app.state.services.search,  # type: ignore[arg-type]
                                                 settings)
        app.state.ehr = EhrService.open(EhrConfig.from_settings(settings), store, cache) \
            if settings.ehr_base_url else None
        app.state.audit = AuditLog(store)
        await app.state.audit.start()
        settle_heap()
        try:
            yield
        finally:
            unsettle_heap()
            await app.state.audit.stop()
            if app.state.ehr is not None:
                await app.state.ehr.aclose()
            await app.state.exports.stop()
            await http.aclose()
            await cache.close()
            await store.close()

    # FastAPI's own OpenTelemetry hooks are off: the gateway has its metrics and request log
    # (gateway/observability), and checking for a configured provider cost every request.
    app = FastAPI(title="Biobank FHIR Gateway", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None, telemetry={"tracing": False, "metrics": False, "logs": False})
    errors.install(app)
    app.add_middleware(AuditMiddleware)
    app.add_middleware(Gzip, minimum_size=1024)
    app.add_middleware(RegisteredOriginsCORS)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    app.add_middleware(ObserveRequests)  # outermost: its duration and request id cover everything
    routers = [read.router, search.router,  # first: the hot paths; their convertors match stored types and ids only
               auth_router, *(m.router for m in OPERATIONS),
               *([ehr_proxy.router] if settings.ehr_base_url else []),  # before the generic routes
               export.router,  # before the generic /fhir/{type}/{id} routes
               *(m.router for m in (health, capabilities, transaction, history)), search.unstored,
               *(m.router for m in (create, update, delete))]
    for router in routers:
        # Flat, in this order: FastAPI's lazily merged included routers cost ~0.3 ms a request to match.
        app.router.routes.extend(router.routes)
    return app
