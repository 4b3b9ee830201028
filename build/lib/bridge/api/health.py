"""Liveness, readiness and Prometheus metrics (no authentication, nothing secret)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.api.deps import BridgeDep
from bridge.api.errors import error_response
from bridge.storage import migrate, queries
from bridge.storage.database import DatabaseUnavailable

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The database is reachable, its schema is current and webhook ingest progresses",
)
def readyz(bridge: BridgeDep) -> JSONResponse:
    stalled = bridge.ingest.stalled()
    if stalled:
        return error_response(503, "ingest_stalled", stalled)
    try:
        with bridge.db.connection() as conn:
            waiting = [m.name for m in migrate.pending(conn)]
    except DatabaseUnavailable as exc:
        return error_response(503, "database_unavailable", str(exc))
    if waiting:
        return error_response(
            503, "schema_outdated", f"pending migrations: {', '.join(waiting)}; run bridge migrate"
        )
    return JSONResponse({"status": "ready"})


@router.get("/metrics", summary="Prometheus metrics")
def metrics(bridge: BridgeDep) -> Response:
    try:
        with bridge.db.connection() as conn:
            bridge.metrics.conflicts.set(conn.execute(queries.COUNT_CONFLICTS).fetchone()[0])
            by_status = dict(conn.execute(queries.SWEEPS_BY_STATUS).fetchall())
            recorded, last = conn.execute(queries.SWEEP_TOTALS).fetchone()
        for status in ("running", "completed", "failed"):
            bridge.metrics.sweeps.labels(status).set(by_status.get(status, 0))
        bridge.metrics.sweep_jobs.set(recorded)
        bridge.metrics.last_sweep.set(last)
        bridge.metrics.database_up.set(1)
    except DatabaseUnavailable:
        bridge.metrics.database_up.set(0)
    return Response(generate_latest(bridge.metrics.registry), media_type=CONTENT_TYPE_LATEST)
