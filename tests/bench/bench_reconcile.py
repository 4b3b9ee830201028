"""Reconciler throughput (issue: nothing lost, nothing double-counted).

A first sweep over the GitLab contract fake (10 projects, 10,000 jobs in every state) into
an empty ledger on a durable Postgres: every job listed, every finished one applied through
the ledger. Compared with listing the same jobs from the same fake with python-gitlab and
applying nothing, measured in the same run: the ratio is what the ledger adds.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from pathlib import Path

import psycopg

from bridge.billing import load_rates
from bridge.gitlab.api import GitLabApi
from bridge.reconcile import sweep
from bridge.storage.migrate import migrate
from tests.bench.bench_bridge_ledger import RATES, durable_postgres, new_database
from tests.bench.table import Row
from tests.bridge.gitlab_fake import TOKEN, GitLabFake, populate

PROJECTS = 10
JOBS = 10_000
TARGET = 1000  # jobs/s: a year of a busy lab (~100,000 jobs) in under two minutes


def run() -> list[Row]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-reconcile-"))
    fake = GitLabFake()
    populate(fake, random.Random(1), [f"group-{n}/project-{n}" for n in range(PROJECTS)], JOBS)
    listed = sum(len(project.jobs) for project in fake.projects.values())
    fake.start()
    try:
        api = GitLabApi(fake.url, TOKEN)
        started = time.perf_counter()
        seen = sum(1 for p in api.projects() for _ in api.jobs_above(p["id"], 0))
        list_rate = seen / (time.perf_counter() - started)

        rates_file = workdir / "rates.yml"
        rates_file.write_text(RATES)
        with durable_postgres() as server:
            url = new_database(server, "reconcile")
            with psycopg.connect(url, autocommit=True) as conn:
                migrate(conn)
                started = time.perf_counter()
                result = sweep(conn, GitLabApi(fake.url, TOKEN), load_rates(rates_file), fake.url)
                elapsed = time.perf_counter() - started
    finally:
        fake.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if not result.completed or result.listed != listed:
        raise RuntimeError(f"sweep listed {result.listed} of {listed} jobs: {result.failures}")
    rate = result.listed / elapsed
    return [
        Row(
            benchmark=f"reconcile sweep, {listed:,} jobs in {PROJECTS} projects, empty ledger",
            measured=f"{rate:,.0f} jobs/s ({result.recorded:,} recorded, {elapsed:.1f} s)",
            baseline=f"{list_rate:,.0f} jobs/s listed only (python-gitlab, same fake)",
            comparison=f"ratio {rate / list_rate:.2f}",
            target=f">= {TARGET:,} jobs/s",
            met=rate >= TARGET,
        )
    ]
