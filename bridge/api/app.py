"""The bridge's HTTP application: wiring of settings, rates, the pool and the routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from bridge import __version__
from bridge.analyses import routes as analysis_routes
from bridge.api import errors, health, hooks, reports, runs, usage_samples
from bridge.api.deps import Bridge
from bridge.billing import Rates, load_rates
from bridge.datasets import routes as dataset_routes
from bridge.hpc import routes as hpc_routes
from bridge.ingest import IngestQueue
from bridge.metrics import Metrics
from bridge.pages import routes as pages
from bridge.settings import Settings
from bridge.storage.database import Database

log = logging.getLogger("bridge")

REQUIRED_SETTINGS = ("database_url", "webhook_token", "admin_token", "rates_file", "gitlab_url")


def create_app(settings: Settings, *, rates: Rates | None = None) -> FastAPI:
    """Build the app; raises ConfigError or RatesFileError before serving anything."""
    settings.require(*REQUIRED_SETTINGS)
    rates = rates or load_rates(settings.rates_path)
    db = Database(str(settings.database_url))
    # Deliveries waiting longer than a sender does (ingest_timeout) mean ingest is stuck.
    ingest = IngestQueue(db, rates, stall_after=settings.ingest_timeout)
    bridge = Bridge(settings=settings, rates=rates, db=db, ingest=ingest, metrics=Metrics())

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
    # Every body is bounded before any route reads it; a route with a larger (or smaller)
    # need names its limit here.
    body_limits = {
        hooks.PATH: settings.max_webhook_bytes,
        runs.PATH: settings.max_run_bytes,
        usage_samples.PATH: settings.max_samples_bytes,
        dataset_routes.PATH: settings.max_manifest_bytes,
        hpc_routes.PATH: hpc_routes.MAX_BODY_BYTES,
    }
    app.add_middleware(errors.BodyLimit, limits=body_limits, default=settings.max_other_bytes)
    # Added last, so it wraps everything else: no exception escapes without the envelope.
    app.add_middleware(errors.ErrorBoundary)
    app.router.routes.append(hooks.route)
    for router in ROUTERS:
        app.include_router(router)
    _document(app, hooks.PATH, {"post": hooks.OPERATION})
    pages.install(app)
    return app


ROUTERS = (
    reports.router,
    usage_samples.router,
    runs.router,
    hpc_routes.router,
    health.router,
    dataset_routes.router,
    analysis_routes.router,
    pages.router,
)


def _document(app: FastAPI, path: str, item: dict[str, Any]) -> None:
    """Add a plain (non-FastAPI) route's operations to the app's OpenAPI document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # built once and cached by FastAPI; the addition persists
        schema["paths"].setdefault(path, item)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
