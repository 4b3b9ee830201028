"""Measured usage: what the runner hosts' collectors report, and the invoice lines it prices.

Why a resent sample never counts twice: a collector does not send increments. For every
job container it watches it sends the container's *cumulative* totals since the container
started (CPU-seconds from the cgroup counter, GiB-seconds of memory and GPU-seconds it has
integrated so far). The bridge keeps one row per (job, host, container) and raises each
total to the larger of the stored and the received value. A sample sent twice, late, out
of order or from a spool after an outage therefore changes nothing once a newer one has
arrived, and losing an intermediate sample loses nothing as long as a later one arrives.
A job's usage is the sum over its containers (build, services, helpers).

Measured usage is advisory (ARCHITECTURE.md): it adds lines priced per CPU-hour, GiB-hour
and GPU-hour when the job's runner class has such prices, and never changes the duration
lines. The job's client, period and runner class come from the ledger (GitLab's facts),
never from the collector; usage of a job the ledger does not bill yet waits until it does.
Quantities billed by a finalized invoice are frozen per job (`invoice_usage`); what a job's
containers report after that is billed as an adjustment of the next open period.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Annotated, Any

import psycopg
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from bridge.billing import Rates, invoice_line, resource_amount
from bridge.bounds import Id, Moment
from bridge.storage import queries

SECONDS_PER_HOUR = Decimal(3600)
MAX_SAMPLES = 1000  # per request

Quantity = Annotated[Decimal, Field(ge=0, le=Decimal(10) ** 12, decimal_places=9)]


class Sample(BaseModel):
    """Cumulative totals of one job container, as its host's collector measured them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: Id = Field(description="com.gitlab.gitlab-runner.job.id")
    project_id: Id = Field(description="com.gitlab.gitlab-runner.project.id")
    container_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    started_at: Moment
    observed_at: Moment
    cpu_seconds: Quantity
    memory_gib_seconds: Quantity
    gpu_seconds: Quantity


# (line kind, price attribute of the runner class, unit of the price)
RESOURCES = (
    ("cpu", "per_cpu_hour", "cpu-hour"),
    ("memory", "per_gb_hour", "GiB-hour"),
    ("gpu", "per_gpu_hour", "gpu-hour"),
)


def record_samples(
    conn: psycopg.Connection, instance: str, host: str, samples: Iterable[Sample]
) -> int:
    """Store the samples of one host; returns how many containers' totals grew."""
    latest: dict[tuple[int, str], Sample] = {}
    for sample in samples:
        key = (sample.job_id, sample.container_id)
        # One row per container and statement (Postgres cannot upsert a row twice at once).
        latest[key] = _larger(latest[key], sample) if key in latest else sample
    rows = [sample.model_dump(mode="json") for sample in latest.values()]
    changed = conn.execute(
        queries.RECORD_SAMPLES, {"instance": instance, "host": host, "samples": Jsonb(rows)}
    ).fetchall()
    return len(changed)


def _larger(a: Sample, b: Sample) -> Sample:
    return a.model_copy(
        update={
            "observed_at": max(a.observed_at, b.observed_at),
            "cpu_seconds": max(a.cpu_seconds, b.cpu_seconds),
            "memory_gib_seconds": max(a.memory_gib_seconds, b.memory_gib_seconds),
            "gpu_seconds": max(a.gpu_seconds, b.gpu_seconds),
        }
    )


def resource_lines(
    conn: psycopg.Connection, rates: Rates, client: str, period: str, periods: list[str]
) -> list[dict[str, Any]]:
    """Priced lines of measured usage not yet billed: `period`'s own jobs first, then the
    late usage of the finalized `periods` it adjusts (with `for_period`)."""
    measured: dict[tuple[str, str], list[Any]] = {}
    for row_period, runner_class, *totals in conn.execute(
        queries.MEASURED_BY_CLASS, {"client": client, "periods": periods}
    ):
        measured[(row_period, runner_class)] = totals
    lines = []
    for row_period in periods[:1] + sorted(periods[1:]):
        for runner_class in rates.classes:
            totals = measured.get((row_period, runner_class.name))
            if totals is None:
                continue
            for index, (kind, price_name, unit) in enumerate(RESOURCES):
                jobs, seconds = totals[2 * index], totals[2 * index + 1]
                price = getattr(runner_class, price_name)
                if price is None or not jobs:
                    continue
                lines.append(
                    invoice_line(
                        kind,
                        runner_class.name,
                        jobs,
                        # CPU-seconds, GiB-seconds or GPU-seconds: the measured quantity.
                        seconds,
                        resource_amount(seconds / SECONDS_PER_HOUR, price),
                        priced_per=(unit, price),
                        for_period=row_period if row_period != period else None,
                    )
                )
    return lines


def freeze(conn: psycopg.Connection, client: str, period: str, periods: list[str]) -> None:
    """Record what the invoice of (client, period) billed per job; same snapshot as it."""
    conn.execute(
        queries.FREEZE_INVOICE_USAGE, {"client": client, "period": period, "periods": periods}
    )
