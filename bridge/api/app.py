"""The bridge's HTTP application: wiring of settings, rates, the pool and the routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from bridge import __version__
from bridge.api import errors, health, hooks, reports, runs, usage_samples
from bridge.api.deps import Bridge
from bridge.billing import Rates, load_rates
from bridge.hpc import routes as hpc_routes
from bridge.ingest import IngestQueue
from bridge.metrics import Metrics
from bridge.settings import Settings
from bridge.storage.database import Database

log = logging.getLogger("bridge")

REQUIRED_SETTINGS = ("database_url", "webhook_token", "admin_token", "rates_file", "gitlab_url")


def create_app(settings: Settings, *, rates: Rates | None = None) -> FastAPI:
    """Build the app; raises ConfigError or RatesFileError before serving anything."""
    settings.require(*REQUIRED_SETTINGS)
    rates = rates or load_rates(settings.rates_path)
    db = Database(str(settings.database_url))
    bridge = Bridge(
        settings=settings, rates=rates, db=db, ingest=IngestQueue(db, rates), metrics=Metrics()
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Opening does not wait for Postgres: the bridge starts (and says it is not ready)
        # while the database is still coming up, and recovers without a restart.
        bridge.db.open()
        bridge.ingest.start()
        try:
            yield
        finally:
            # The server has finished its in-flight requests: apply what they submitted.
            bridge.ingest.stop()
            bridge.db.close()

    app = FastAPI(
        title="bridge",
        version=__version__,
        summary="Usage ledger, run provenance and invoices of the platform.",
        lifespan=lifespan,
        # The interactive docs pull scripts from a CDN, which air-gapped sites cannot reach;
        # the schema itself is served at /openapi.json.
        docs_url=None,
        redoc_url=None,
    )
    app.state.bridge = bridge
    errors.install(app)
    app.add_middleware(hooks.WebhookEndpoint)
    app.include_router(reports.router)
    app.include_router(usage_samples.router)
    app.include_router(runs.router)
    app.include_router(hpc_routes.router)
    app.include_router(health.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            schema["paths"][hooks.PATH] = hooks.OPENAPI
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
