"""Bridge ledger benchmarks (issue: exactly-once usage ledger).

1. Webhook ingest with 8 concurrent senders against the real `bridge serve`, next to the
   raw durable single-row INSERT rate of the same Postgres with 8 clients (pgbench, the
   fastest client there is, inserting the same JSON payload).
2. A client-month invoice over 1,000,000 stored jobs, next to a naive aggregation of the
   same invoice straight from the raw events.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg

from bridge import invoices
from bridge.billing import load_rates
from bridge.storage.migrate import migrate
from local.postgres import LocalPostgres
from tests.bench.loadgen import http_request, run_load
from tests.bench.table import Row
from tests.bridge.payloads import CPU_RUNNER, GPU_RUNNER, lifecycle
from tests.fixtures.bridge import GITLAB_URL, start_bridge
from tests.fixtures.postgres import new_cluster_dir

SENDERS = 8
JOBS = 6000  # x 4 lifecycle events
WARMUP_EVENTS = 1000
STORED_JOBS = 1_000_000
RATES = """\
currency: EUR
classes:
  - {name: gpu, match_tags: [gpu], per_minute: "0.50"}
  - {name: standard, match_tags: [], per_minute: "0.02"}
clients:
  acme-vision: acme
"""


@contextmanager
def durable_postgres() -> Iterator[LocalPostgres]:
    base = new_cluster_dir()
    server = LocalPostgres(base / "cluster", durable=True)
    server.start()
    try:
        yield server
    finally:
        server.destroy()
        shutil.rmtree(base, ignore_errors=True)


def new_database(server: LocalPostgres, name: str) -> str:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")  # fixed names
    return server.url(name)


def pgbench_insert_rate(server: LocalPostgres, payload: dict, database: str) -> float:
    url = new_database(server, database)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id bigserial PRIMARY KEY, payload jsonb NOT NULL)")
    literal = json.dumps(payload).replace("'", "''")
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(f"INSERT INTO events (payload) VALUES ('{literal}');\n")  # noqa: S608 - our own payload, quotes doubled
    pgbench = next(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))
    try:
        output = subprocess.run(
            [pgbench, "-n", "-c", str(SENDERS), "-j", "2", "-T", "10", "-f", script.name, url],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(script.name)
    return float(re.search(r"tps = ([\d.]+)", output)[1])


def job_events() -> list[tuple[str, dict]]:
    """(idempotency key, payload) of JOBS jobs (created, pending, running, finished), in the
    order GitLab would send them: jobs start 0.1 s apart and run 90 s, so their events
    interleave and concurrent senders rarely touch the same job at once."""
    start = datetime(2026, 10, 1, tzinfo=UTC)
    timeline = []
    for build_id in range(1, JOBS + 1):
        created = start + timedelta(seconds=build_id / 10)
        offsets = (0, 1, 5, 95)  # seconds after creation of each lifecycle event
        for index, (offset, payload) in enumerate(
            zip(
                offsets,
                lifecycle(
                    build_id,
                    runner=GPU_RUNNER if build_id % 4 == 0 else CPU_RUNNER,
                    started=created + timedelta(seconds=5),
                    finished=created + timedelta(seconds=95),
                    duration=90.0,
                ),
                strict=True,
            )
        ):
            timeline.append(
                (created + timedelta(seconds=offset), f"bench-{build_id}-{index}", payload)
            )
    timeline.sort(key=lambda event: event[0])
    return [(key, payload) for _, key, payload in timeline]


def bench_ingest(server: LocalPostgres, workdir: Path) -> Row:
    events = job_events()
    # The disk of a shared VM drifts: measure the baseline before and after, use the mean.
    raw_before = pgbench_insert_rate(server, events[0][1], "raw_before")

    url = new_database(server, "ledger_ingest")
    with psycopg.connect(url) as conn:
        migrate(conn)
    rates = workdir / "rates.yml"
    rates.write_text(RATES)
    env = {
        "BRIDGE_DATABASE_URL": url,
        "BRIDGE_WEBHOOK_TOKEN": "bench-token",
        "BRIDGE_ADMIN_TOKEN": "bench-admin",
        "BRIDGE_RATES_FILE": str(rates),
        "BRIDGE_GITLAB_URL": GITLAB_URL,
    }
    bridge = start_bridge(env, workdir / "bridge.log")
    try:
        port = int(bridge.url.rsplit(":", 1)[1])
        requests = [
            http_request(
                "/hooks/gitlab",
                json.dumps(payload).encode(),
                {
                    "Content-Type": "application/json",
                    "X-Gitlab-Token": "bench-token",
                    "X-Gitlab-Event": "Job Hook",
                    "Idempotency-Key": key,
                },
            )
            for key, payload in events
        ]
        run_load("127.0.0.1", port, requests[:WARMUP_EVENTS], SENDERS)
        result = run_load("127.0.0.1", port, requests[WARMUP_EVENTS:], SENDERS)
    finally:
        bridge.stop()
    raw_rate = (raw_before + pgbench_insert_rate(server, events[0][1], "raw_after")) / 2
    if set(result.statuses) != {200}:
        raise RuntimeError(f"ingest answered {result.statuses}; see {bridge.log}")
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT count(*) FROM jobs WHERE billable").fetchone()[0]
    if stored != JOBS:
        raise RuntimeError(f"{stored} billable jobs after ingest, expected {JOBS}")

    ratio = result.rate / raw_rate
    p50, p99 = result.percentile(0.50) * 1000, result.percentile(0.99) * 1000
    return Row(
        benchmark=f"webhook ingest, {SENDERS} concurrent senders",
        measured=f"{result.rate:,.0f} events/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms",
        baseline=f"{raw_rate:,.0f} durable INSERT/s (pgbench, {SENDERS} clients, mean of 2)",
        comparison=f"ratio {ratio:.2f}",
        # The goal the bridge-hardening issue set; its figures from before the hardening
        # (an ASGI endpoint outside the routing) were 894-1,850 events/s, p99 8-20 ms.
        target=">= 800 events/s and p99 < 50 ms (before: 894-1,850/s, p99 8-20 ms)",
        met=result.rate >= 800 and p99 < 50,
    )


# Clients: acme (acme-vision) has 40% of all jobs; nine others share the rest. Finish times
# spread over 2026; a third of the jobs ran on GPU runners.
_GENERATE_RAW = """
INSERT INTO raw_events (instance, source, kind, headers, body)
SELECT %(instance)s, 'webhook', 'build', '{}', convert_to(jsonb_build_object(
         'object_kind', 'build', 'build_id', g, 'build_status', 'success',
         'build_duration', (g %% 3600) + 0.5,
         'build_finished_at_iso',
           to_char(finished AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
         'project', jsonb_build_object('path_with_namespace', grp || '/project-' || g %% 7),
         'runner', jsonb_build_object(
            'id', 1 + g %% 3,
            'tags', CASE WHEN g %% 3 = 0 THEN '["gpu", "docker"]'::jsonb
                         ELSE '["docker"]'::jsonb END))::text, 'UTF8')
FROM (
  SELECT g,
         CASE WHEN g %% 10 < 4 THEN 'acme-vision' ELSE 'lab-' || g %% 9 END AS grp,
         timestamptz '2026-01-01 00:00:00+00'
           + ((g::bigint * 7919) %% 31536000) * interval '1 second' AS finished
  FROM generate_series(1, %(jobs)s) AS g
) AS generated
"""

# The same jobs as the ledger holds them after applying those events.
_DERIVE_JOBS = """
INSERT INTO jobs (instance, build_id, project_path, client, status, status_rank, finished_at,
                  duration,
                  runner_id, runner_tags, terminal_event_id, billable, billable_seconds,
                  runner_class, period)
SELECT instance, (payload->>'build_id')::bigint, payload->'project'->>'path_with_namespace',
       CASE WHEN payload->'project'->>'path_with_namespace' LIKE 'acme-vision/%%' THEN 'acme'
            ELSE split_part(payload->'project'->>'path_with_namespace', '/', 1) END,
       'success', 3, (payload->>'build_finished_at_iso')::timestamptz,
       (payload->>'build_duration')::numeric, (payload->'runner'->>'id')::bigint,
       ARRAY(SELECT jsonb_array_elements_text(payload->'runner'->'tags')), id, true,
       (payload->>'build_duration')::numeric,
       CASE WHEN payload->'runner'->'tags' ? 'gpu' THEN 'gpu' ELSE 'standard' END,
       to_char((payload->>'build_finished_at_iso')::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM')
FROM (SELECT id, instance, convert_from(body, 'UTF8')::jsonb AS payload FROM raw_events) AS raw
"""

# Naive: the invoice straight from raw events, as one would without a ledger.
NAIVE_INVOICE = """
WITH first_terminal AS (
  SELECT DISTINCT ON ((payload->>'build_id')::bigint) payload
  FROM (SELECT id, convert_from(body, 'UTF8')::jsonb AS payload FROM raw_events) AS raw
  WHERE payload->>'object_kind' = 'build'
    AND payload->>'build_status' IN ('success', 'failed', 'canceled')
    AND jsonb_typeof(payload->'runner') = 'object'
  ORDER BY (payload->>'build_id')::bigint, id
)
SELECT CASE WHEN payload->'runner'->'tags' ? 'gpu' THEN 'gpu' ELSE 'standard' END AS class,
       count(*), sum((payload->>'build_duration')::numeric)
FROM first_terminal
WHERE split_part(payload->'project'->>'path_with_namespace', '/', 1) = ANY(%(groups)s)
  AND to_char((payload->>'build_finished_at_iso')::timestamptz AT TIME ZONE 'UTC', 'YYYY-MM')
      = %(period)s
GROUP BY 1
"""


def timed(function, repeats: int) -> tuple[float, object]:
    durations, value = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        value = function()
        durations.append(time.perf_counter() - started)
    return statistics.median(durations), value


def bench_invoice(server: LocalPostgres, workdir: Path) -> Row:
    url = new_database(server, "ledger_invoice")
    rates_file = workdir / "rates.yml"
    rates_file.write_text(RATES)
    rates = load_rates(rates_file)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
        params = {"instance": GITLAB_URL, "jobs": STORED_JOBS}
        conn.execute(_GENERATE_RAW, params)
        conn.execute(_DERIVE_JOBS)
        conn.execute("VACUUM ANALYZE")
        client, period = "acme", "2026-06"
        in_month = conn.execute(
            "SELECT count(*) FROM jobs WHERE client = %s AND period = %s", (client, period)
        ).fetchone()[0]

        fast, document = timed(lambda: invoices.document(conn, rates, client, period), 20)
        naive, rows = timed(
            lambda: conn.execute(
                NAIVE_INVOICE, {"groups": rates.groups_of(client), "period": period}
            ).fetchall(),
            3,
        )
    naive_lines = {name: (jobs, seconds) for name, jobs, seconds in rows}
    fast_lines = {
        line["runner_class"]: (line["jobs"], Decimal(line["billable_seconds"]))
        for line in document["lines"]
    }
    if fast_lines != naive_lines:
        raise RuntimeError(f"invoice {fast_lines} differs from naive {naive_lines}")
    return Row(
        benchmark=f"client-month invoice over {STORED_JOBS:,} jobs ({in_month:,} in the month)",
        measured=f"{fast * 1000:.1f} ms (median of 20)",
        baseline=f"{naive * 1000:,.0f} ms naive aggregation over raw events (median of 3)",
        comparison=f"{naive / fast:,.0f}x faster",
        target="invoice < 50 ms",
        met=fast < 0.050,
    )


def run() -> list[Row]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    try:
        with durable_postgres() as server:
            return [bench_ingest(server, workdir), bench_invoice(server, workdir)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
