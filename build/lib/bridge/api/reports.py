"""Usage, invoices and jobs over HTTP: the admin sees everything, a client only itself."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from bridge import invoices, jobs, reports
from bridge.api.deps import BridgeDep, CallerDep
from bridge.api.errors import ApiError
from bridge.bounds import MAX_BIGINT, Moment

router = APIRouter(prefix="/api/v1", tags=["billing"])

PERIOD = r"^\d{4}-(0[1-9]|1[0-2])$"
# A client id or group path in any case; answered under its canonical id (lower-case,
# mapped through the rates file's `clients:`).
CLIENT = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
# Free-text filters: no NUL (Postgres text cannot hold it).
PLAIN = r"^[^\x00]*$"


def _document(bridge: BridgeDep, client: str, period: str) -> dict[str, Any]:
    with bridge.db.connection() as conn:
        try:
            return invoices.document(conn, bridge.rates, client, period)
        except invoices.UnknownClient:
            raise ApiError(404, "unknown_client", f"no client {client!r}") from None


@router.get("/usage", summary="Usage of one client in one month, priced")
def usage(
    bridge: BridgeDep,
    caller: CallerDep,
    client: Annotated[str, Query(pattern=CLIENT)],
    period: Annotated[str, Query(pattern=PERIOD, description="YYYY-MM (UTC month)")],
) -> dict[str, Any]:
    client = bridge.rates.client_of(client)
    caller.require_client(client)
    return _document(bridge, client, period)


@router.get("/invoices/{client}/{period}", summary="The invoice of one client and month")
def invoice(
    bridge: BridgeDep,
    caller: CallerDep,
    client: Annotated[str, Path(pattern=CLIENT)],
    period: Annotated[str, Path(pattern=PERIOD)],
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
) -> Any:
    client = bridge.rates.client_of(client)
    caller.require_client(client)
    document = _document(bridge, client, period)
    if format == "csv":
        return Response(reports.to_csv(document), media_type="text/csv; charset=utf-8")
    return document


@router.get("/jobs", summary="Jobs in the ledger, newest first")
def list_jobs(
    bridge: BridgeDep,
    caller: CallerDep,
    client: Annotated[str | None, Query(pattern=CLIENT)] = None,
    project: Annotated[str | None, Query(max_length=1000, pattern=PLAIN)] = None,
    status: Annotated[str | None, Query(max_length=40, pattern=PLAIN)] = None,
    since: Annotated[Moment | None, Query(description="changed at or after")] = None,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_BIGINT, description="cursor: build ids below this")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    if client is not None:
        client = bridge.rates.client_of(client)
    if not caller.is_admin:
        caller.require_client(client or str(caller.client))
        client = caller.client
    with bridge.db.connection() as conn:
        page = jobs.list_jobs(
            conn,
            bridge.settings.instance,
            client=client,
            project=project,
            status=status,
            since=since,
            before=before,
            limit=limit,
        )
    next_cursor = page[-1]["id"] if len(page) == limit else None
    return {"jobs": page, "next_before": next_cursor}


@router.get("/jobs/{build_id}", summary="One job with its provenance and conflicts")
def get_job(
    bridge: BridgeDep, caller: CallerDep, build_id: Annotated[int, Path(ge=1, le=MAX_BIGINT)]
) -> dict[str, Any]:
    with bridge.db.connection() as conn:
        job = jobs.get_job(conn, bridge.settings.instance, build_id)
    if job is None:
        raise ApiError(404, "unknown_job", f"no job {build_id}")
    caller.require_client(job["client"])
    return job
