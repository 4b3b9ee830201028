"""Reading jobs back out of the ledger, as JSON-ready dicts."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from bridge import provenance
from bridge.storage import queries


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, Decimal):
            value = format(value, "f")
        elif isinstance(value, datetime):
            value = value.isoformat()
        out[key] = value
    out["id"] = out.pop("build_id")
    return out


def get_job(conn: psycopg.Connection, instance: str, build_id: int) -> dict[str, Any] | None:
    """The job with its provenance chain. A job that posted its run before GitLab reported
    it (the run arrives while the job runs) is returned from what its ID token proved."""
    params = {"instance": instance, "build_id": build_id}
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(queries.GET_JOB, params).fetchone()
        runs = cur.execute(queries.JOB_RUNS, params).fetchall()
        if row is None and not runs:
            return None
        job = _jsonable(row) if row else provenance.job_from_run(instance, build_id, runs[0])
        job["conflicts"] = [_jsonable_plain(c) for c in cur.execute(queries.JOB_CONFLICTS, params)]
        overflow = cur.execute(queries.RUN_OVERFLOW, params).fetchone()
    job["provenance"] = provenance.chain(runs, overflow["reports"] if overflow else 0)
    return job


def _jsonable_plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def list_jobs(
    conn: psycopg.Connection,
    instance: str,
    *,
    client: str | None,
    project: str | None,
    status: str | None,
    since: datetime | None,
    before: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    params = {
        "instance": instance,
        "client": client,
        "project": project,
        "status": status,
        "since": since,
        "before": before,
        "limit": limit,
    }
    with conn.cursor(row_factory=dict_row) as cur:
        return [_jsonable(row) for row in cur.execute(queries.LIST_JOBS, params)]
