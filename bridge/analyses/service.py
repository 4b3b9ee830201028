"""Submitting an analysis once, and reading its status from its pipeline's jobs.

The status is not stored: it is computed from the jobs the ledger keeps for the pipeline,
which the job and pipeline webhooks and the reconciler already fill. So an analysis can
never disagree with the ledger, and a missed webhook is repaired by the next sweep.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from bridge.analyses import queries
from bridge.analyses.trigger import Trigger
from bridge.auth import Caller
from bridge.billing import Rates, line_amount
from bridge.datasets import service as datasets

DATASET_VARIABLE = "PLATFORM_DATASET_ID"
ANALYSIS = re.compile(
    r"^(?P<project>[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)+)"
    r"@(?P<ref>[A-Za-z0-9_][A-Za-z0-9_./\-]{0,254})$"
)
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
MAX_VARIABLES = 50
MAX_VALUE = 10_000
STATUSES = ("queued", "running", "succeeded", "failed", "canceled")
_DONE = {"success", "failed", "canceled", "skipped", "manual"}


class InvalidAnalysis(ValueError):
    pass


class UnknownAnalysis(LookupError):
    pass


@dataclass(frozen=True)
class Submitted:
    analysis: dict[str, Any]
    created: bool


def parse_analysis(text: str) -> tuple[str, str]:
    """`GROUP/PROJECT@REF` -> (project path, ref)."""
    match = ANALYSIS.match(text) if isinstance(text, str) else None
    if not match or ".." in text:
        raise InvalidAnalysis(f"analysis {text!r} must be GROUP/PROJECT@REF, e.g. lab/qc@main")
    return match["project"], match["ref"]


def check_variables(variables: Any) -> dict[str, str]:
    if not isinstance(variables, dict) or len(variables) > MAX_VARIABLES:
        raise InvalidAnalysis(f"variables must be an object of at most {MAX_VARIABLES} entries")
    for key, value in variables.items():
        if not VARIABLE.match(key):
            raise InvalidAnalysis(f"variable name {key!r}: letters, digits and '_' only")
        if key == DATASET_VARIABLE:
            raise InvalidAnalysis(f"{DATASET_VARIABLE} is set from --dataset, not as a variable")
        if not isinstance(value, str) or len(value) > MAX_VALUE or "\x00" in value:
            raise InvalidAnalysis(f"variable {key}: a string of at most {MAX_VALUE} characters")
    return dict(variables)


def request_key(dataset_id: str, project: str, ref: str, variables: dict[str, str]) -> str:
    basis = {"dataset": dataset_id, "project": project.lower(), "ref": ref, "vars": variables}
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()


def submit(
    conn: psycopg.Connection,
    rates: Rates,
    instance: str,
    trigger: Trigger,
    caller: Caller,
    *,
    dataset_id: str,
    analysis: str,
    variables: dict[str, str],
    created_by: str,
    force: bool = False,
) -> Submitted:
    """Start ANALYSIS on the dataset, unless the same request exists (and not `force`).

    Identical concurrent requests wait on one lock per request, so exactly one pipeline
    starts; the lock is held while GitLab answers, which is one bounded HTTP call."""
    project, ref = parse_analysis(analysis)
    variables = check_variables(variables)
    client = rates.client_of(project.lower())
    caller.require_client(client)
    datasets.get(conn, caller, dataset_id)
    key = request_key(dataset_id, project, ref, variables)
    with conn.transaction():
        conn.execute(queries.LOCK_REQUEST, {"request_key": key})
        existing = conn.execute(queries.LATEST_FOR_REQUEST, {"request_key": key}).fetchone()
        if existing is not None and not force:
            return Submitted(get(conn, rates, caller, existing[0]), created=False)
        pipeline = trigger(project, ref, {**variables, DATASET_VARIABLE: dataset_id})
        row = conn.execute(
            queries.INSERT_ANALYSIS,
            {
                "request_key": key,
                "dataset_id": dataset_id,
                "project_path": project,
                "ref": ref,
                "variables": Jsonb(variables),
                "client": client,
                "created_by": created_by,
                "instance": instance,
                "project_id": pipeline["project_id"],
                "pipeline_id": pipeline["id"],
                "pipeline_url": pipeline.get("web_url"),
            },
        ).fetchone()
    assert row is not None
    return Submitted(get(conn, rates, caller, row[0]), created=True)


def status_of(jobs: list[dict[str, Any]]) -> str:
    """The analysis status from its pipeline's jobs, as GitLab composes a pipeline's."""
    statuses = [job["status"] for job in jobs]
    if not statuses:
        return "queued"
    if all(status in _DONE for status in statuses):
        if "failed" in statuses:
            return "failed"
        if "canceled" in statuses:
            return "canceled"
        return "succeeded"
    if any(job["started_at"] is not None or job["status"] == "running" for job in jobs):
        return "running"
    return "queued"


def _stamp(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _results(
    rates: Rates, gitlab_url: str, analysis: dict[str, Any], jobs: list[dict[str, Any]],
    runs: list[dict[str, Any]],
) -> dict[str, Any]:  # fmt: skip
    seconds: dict[str, Decimal] = {}
    for job in jobs:
        if job["billable"] and job["runner_class"]:
            seconds[job["runner_class"]] = seconds.get(job["runner_class"], Decimal(0)) + Decimal(
                job["billable_seconds"]
            )
    total = sum(
        (line_amount(s, rates.by_name(name).per_minute)[1] for name, s in seconds.items()),
        Decimal(0),
    )
    project_url = f"{gitlab_url}/{analysis['project_path']}"
    return {
        "mlflow_runs": [
            {
                "job_id": run["job_id"],
                "run_id": run["mlflow_run_id"],
                "experiment_id": run["mlflow_experiment_id"],
                "url": _mlflow_url(run),
                "artifacts_url": _mlflow_url(run, "/artifacts"),
                "image": run["image"],
                "template": f"{run['template']}@{run['template_version']}",
            }
            for run in runs
        ],
        "artifacts": [
            {
                "job_id": job["build_id"],
                "url": f"{project_url}/-/jobs/{job['build_id']}/artifacts/browse",
            }
            for job in jobs
            if job["status"] == "success"
        ],
        "usage": {
            "currency": rates.currency,
            "billable_seconds": format(sum(seconds.values(), Decimal(0)), "f"),
            "amount": format(total, "f"),
        },
    }


def _mlflow_url(run: dict[str, Any], suffix: str = "") -> str | None:
    base = run["mlflow_tracking_uri"]
    if not base or not base.startswith(("http://", "https://")):
        return None
    return (
        f"{base.rstrip('/')}/#/experiments/{run['mlflow_experiment_id']}"
        f"/runs/{run['mlflow_run_id']}{suffix}"
    )


def get(conn: psycopg.Connection, rates: Rates, caller: Caller, analysis_id: int) -> dict[str, Any]:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(queries.GET_ANALYSIS, {"id": analysis_id}).fetchone()
        if row is None or not (caller.is_admin or row["client"] == caller.client):
            raise UnknownAnalysis(f"no analysis {analysis_id}")
        jobs = cur.execute(queries.PIPELINE_JOBS, row).fetchall()
        runs = cur.execute(queries.PIPELINE_RUNS, row).fetchall()
    status = status_of(jobs)
    started = [j["started_at"] for j in jobs if j["started_at"] is not None]
    finished = [j["finished_at"] for j in jobs if j["finished_at"] is not None]
    done = status in ("succeeded", "failed", "canceled")
    return {
        "id": row["id"],
        "dataset_id": row["dataset_id"],
        "analysis": f"{row['project_path']}@{row['ref']}",
        "project": row["project_path"],
        "ref": row["ref"],
        "variables": row["variables"],
        "client": row["client"],
        "created_by": row["created_by"],
        "pipeline_id": row["pipeline_id"],
        "pipeline_url": row["pipeline_url"],
        "status": status,
        "queued_at": _stamp(row["created_at"]),
        "started_at": _stamp(min(started)) if started else None,
        "finished_at": _stamp(max(finished)) if done and finished else None,
        "jobs": [
            {
                "id": j["build_id"],
                "name": j["name"],
                "stage": j["stage"],
                "status": j["status"],
                "started_at": _stamp(j["started_at"]),
                "finished_at": _stamp(j["finished_at"]),
            }
            for j in jobs
        ],
        **_results(rates, row["instance"], row, jobs, runs),
    }


def list_analyses(
    conn: psycopg.Connection,
    rates: Rates,
    caller: Caller,
    *,
    dataset_id: str | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    params = {
        "client": None if caller.is_admin else caller.client,
        "dataset_id": dataset_id,
        "before": before,
        "limit": max(1, min(limit, 500)),
    }
    ids = [row[0] for row in conn.execute(queries.LIST_ANALYSES, params)]
    return [get(conn, rates, caller, analysis_id) for analysis_id in ids]
