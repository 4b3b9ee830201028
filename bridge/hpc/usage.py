"""Recording HPC usage reports and pricing them as invoice lines (no HTTP, no click)."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from enum import Enum
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from bridge.billing import Rates, hourly_amount, invoice_line
from bridge.hpc import queries
from bridge.provenance import JobIdentity


class HpcUsageReport(BaseModel):
    """The body of `POST /api/v1/hpc-usage`: what Slurm accounted for the CI job's cluster job.

    Strict: no type coercion, no unknown fields. Billed CPU-seconds are computed here as
    elapsed x allocated CPUs (Slurm's own `CPUTime`), never taken from the body.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    cluster: str = Field(min_length=1, max_length=255, pattern=r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
    slurm_job_id: str = Field(pattern=r"^[0-9]{1,20}$")
    state: str = Field(pattern=r"^[A-Z_]{1,32}$", description="Slurm's final JobState")
    exit_code: int = Field(ge=0, le=255)
    elapsed_seconds: int = Field(ge=0, le=366 * 86400)
    alloc_cpus: int = Field(ge=0, le=1_000_000)
    alloc_gpus: int = Field(ge=0, le=100_000)
    alloc_memory_mb: int = Field(ge=0, le=10**12)
    partition: str = Field(default="", max_length=255, pattern=r"^[A-Za-z0-9_.,-]*$")
    mlflow_run_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,255}$")
    # The job may repeat who it is; compared with the token, never used instead.
    job_id: int | None = None
    pipeline_id: int | None = None
    project_path: str | None = Field(default=None, max_length=1000)

    def contradictions(self, identity: JobIdentity) -> list[str]:
        proven = {
            "job_id": identity.job_id,
            "pipeline_id": identity.pipeline_id,
            "project_path": identity.project_path,
        }
        return [
            f"{name}: the body says {stated!r}, the ID token says {value!r}"
            for name, value in proven.items()
            if (stated := getattr(self, name)) is not None and stated != value
        ]


class Outcome(Enum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


def record(
    conn: psycopg.Connection,
    instance: str,
    identity: JobIdentity,
    client: str,
    report: HpcUsageReport,
) -> Outcome:
    """Store the first report of a CI job; the same again is a duplicate, another a conflict."""
    usage = report.model_dump(mode="json", exclude={"job_id", "pipeline_id", "project_path"})
    fingerprint = hashlib.sha256(json.dumps(usage, sort_keys=True).encode()).hexdigest()
    inserted = conn.execute(
        queries.INSERT_USAGE,
        {
            **usage,
            "instance": instance,
            "build_id": identity.job_id,
            "project_path": identity.project_path,
            "client": client,
            "pipeline_id": identity.pipeline_id,
            "claims": Jsonb(dict(identity.claims)),
            "fingerprint": fingerprint,
        },
    ).fetchone()
    if inserted is not None:
        return Outcome.RECORDED
    first = conn.execute(
        queries.FIRST_FINGERPRINT, {"instance": instance, "build_id": identity.job_id}
    ).fetchone()
    return Outcome.DUPLICATE if first and first[0] == fingerprint else Outcome.CONFLICT


def lines(
    conn: psycopg.Connection, rates: Rates, client: str, period: str, periods: list[str]
) -> list[dict[str, Any]]:
    """`hpc` invoice lines not billed yet: per cluster, CPU-hours and (when used) GPU-hours;
    usage of finalized `periods` that arrived late carries `for_period`."""
    prices = rates.hpc
    found = conn.execute(queries.USAGE_BY_CLUSTER, {"client": client, "periods": periods})
    rows = sorted(found, key=lambda row: (row[0] != period, row[0], row[1]))
    result = []
    for row_period, cluster, jobs, cpu_seconds, gpu_jobs, gpu_seconds in rows:
        for unit, count, quantity, price in (
            ("cpu-hour", jobs, cpu_seconds, prices.per_cpu_hour if prices else None),
            ("gpu-hour", gpu_jobs, gpu_seconds, prices.per_gpu_hour if prices else None),
        ):
            if not count:
                continue
            unit_price = price if price is not None else Decimal(0)
            result.append(
                invoice_line(
                    "hpc",
                    cluster,
                    count,
                    # CPU-seconds or GPU-seconds: elapsed x allocated CPUs (GPUs), as Slurm counts.
                    Decimal(quantity),
                    hourly_amount(Decimal(quantity), unit_price),
                    priced_per=(unit, unit_price),
                    for_period=row_period if row_period != period else None,
                )
            )
    return result


def freeze(conn: psycopg.Connection, client: str, period: str, periods: list[str]) -> None:
    """Record which reports the invoice of (client, period) billed; same snapshot as it."""
    conn.execute(queries.FREEZE, {"client": client, "period": period, "periods": periods})
