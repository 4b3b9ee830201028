"""`bridge reconcile` against the GitLab contract fake: lost webhooks filled, nothing twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient

from bridge import invoices
from bridge.billing import load_rates
from bridge.cli import main
from bridge.gitlab import rest
from local.ports import free_port
from tests.bench.loadgen import http_request, run_load
from tests.bridge import reference
from tests.bridge.gitlab_fake import TERMINAL, TOKEN, GitLabFake, Job, populate
from tests.bridge.helpers import hook_headers
from tests.bridge.payloads import pipeline_event
from tests.fixtures.bridge import BridgeProcess

PATHS = [
    "acme-vision/segmentation",
    "acme-vision/detection",
    "acme-nlp/bert",
    "beta-lab/study",
    "gamma/forecast",
]


@pytest.fixture
def bridge_env(bridge_env: dict[str, str], gitlab: GitLabFake) -> dict[str, str]:
    """The bridge of these tests knows the fake as its GitLab (webhooks and API alike)."""
    return {**bridge_env, "BRIDGE_GITLAB_URL": gitlab.url, "BRIDGE_GITLAB_TOKEN": TOKEN}


def reconcile(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, ["reconcile", "--retries", "1", *args], env=env)


def deliveries(fake: GitLabFake, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """Every webhook GitLab sent for the fake's jobs (job events, and one pipeline event
    per pipeline with its jobs' final states), each with its own Idempotency-Key."""
    sent = []
    for project in fake.projects.values():
        pipelines: dict[int, list[dict[str, Any]]] = {}
        for job in project.jobs:
            sent += job.webhook_events(project)
            pipelines.setdefault(job.pipeline_id, []).append(job.pipeline_build())
        sent += [
            pipeline_event(pid, builds, project=project.path, project_id=project.id)
            for pid, builds in pipelines.items()
        ]
    return [(str(uuid.UUID(int=rng.getrandbits(128))), payload) for payload in sent]


def post_all(server: BridgeProcess, sent: list[tuple[str, dict[str, Any]]]) -> None:
    requests = [
        http_request("/hooks/gitlab", json.dumps(payload).encode(), hook_headers(payload, key))
        for key, payload in sent
    ]
    result = run_load("127.0.0.1", int(server.url.rsplit(":", 1)[1]), requests, senders=8)
    assert result.statuses == {200: len(requests)}


def expected_invoices(fake: GitLabFake) -> dict[tuple[str, str], Any]:
    """The independent recomputation from the fake's truth: one terminal event per job."""
    terminal = [
        (None, job.webhook_events(project)[-1])
        for project, job in fake.all_jobs()
        if job.status in TERMINAL
    ]
    return reference.invoices(terminal)


def ledger_invoices(db: psycopg.Connection, rates_file: str) -> dict[tuple[str, str], Any]:
    rates = load_rates(rates_file)
    pairs = db.execute("SELECT DISTINCT client, period FROM jobs WHERE billable").fetchall()
    found = {}
    for client, period in pairs:
        document = invoices.document(db, rates, client, period)
        found[(client, period)] = {
            line["runner_class"]: (
                line["jobs"],
                Decimal(line["billable_seconds"]),
                Decimal(line["amount"]),
            )
            for line in document["lines"]
        }
    return found


def ledger_state(db: psycopg.Connection) -> dict[str, Any]:
    return {
        "jobs": db.execute("SELECT * FROM jobs ORDER BY build_id").fetchall(),
        "conflicts": db.execute("SELECT * FROM conflicts ORDER BY id").fetchall(),
        "raw_events": db.execute("SELECT count(*), max(id) FROM raw_events").fetchone(),
    }


def test_lost_duplicated_shuffled_webhooks_and_one_sweep_bill_to_the_cent(
    gitlab: GitLabFake,
    bridge_server: BridgeProcess,
    db: psycopg.Connection,
    bridge_env: dict[str, str],
) -> None:
    rng = random.Random(20261122)
    populate(gitlab, rng, PATHS, jobs=3000)
    gitlab.add_project("empty-group/nothing-yet")
    sent = [delivery for delivery in deliveries(gitlab, rng) if rng.random() >= 0.30]
    sent *= 2
    rng.shuffle(sent)
    post_all(bridge_server, sent)
    expected = expected_invoices(gitlab)
    rates_file = bridge_env["BRIDGE_RATES_FILE"]
    assert ledger_invoices(db, rates_file) != expected, "the lost webhooks must show"

    first = reconcile(bridge_env)
    assert first.exit_code == 0, first.output
    assert "completed: 6 projects, " in first.stdout
    assert ledger_invoices(db, rates_file) == expected
    listed = sum(len(p.jobs) for p in gitlab.projects.values())
    assert f"{listed} jobs listed" in first.stdout

    before = ledger_state(db)
    second = reconcile(bridge_env)
    assert second.exit_code == 0, second.output
    # Only the re-list window below each watermark is listed again, and nothing is new.
    assert ", 0 recorded, " in second.stdout
    assert ledger_state(db) == before


def test_jobs_unfinished_during_a_sweep_are_billed_once_they_finish(
    gitlab: GitLabFake, db: psycopg.Connection, bridge_env: dict[str, str]
) -> None:
    project = gitlab.add_project("acme-vision/segmentation")
    runner = gitlab.add_runner(
        reference_runner := {
            "id": 12,
            "description": "cpu",
            "runner_type": "instance_type",
            "tags": ["docker"],
        }
    )
    assert reference_runner["tags"] == runner.tags
    start = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
    done = gitlab.add_job(
        project,
        pipeline_id=1,
        status="success",
        created_at=start,
        started_at=start,
        finished_at=start + timedelta(seconds=60),
        duration=60.0,
        runner=runner,
    )
    running = gitlab.add_job(
        project, pipeline_id=1, status="running", created_at=start, started_at=start, runner=runner
    )
    manual = gitlab.add_job(project, pipeline_id=1, status="manual", created_at=start)
    pending = gitlab.add_job(project, pipeline_id=1, status="pending", created_at=start)

    first = reconcile(bridge_env)
    assert first.exit_code == 0, first.output
    assert "4 jobs listed, 1 recorded, 3 still open" in first.stdout

    # Later, with every webhook lost: the running job ends, the manual one is played and
    # ends, and a new job (above the watermark) runs.
    end = start + timedelta(hours=2)
    gitlab.finish(running, "failed", end, 7200.0)
    manual.started_at, manual.runner = start + timedelta(hours=1), runner
    gitlab.finish(manual, "success", end, 3600.0)
    later = gitlab.add_job(
        project,
        pipeline_id=2,
        status="canceled",
        created_at=end,
        started_at=end,
        finished_at=end + timedelta(seconds=30),
        duration=30.5,
        runner=runner,
    )

    second = reconcile(bridge_env)
    assert second.exit_code == 0, second.output
    # The four jobs below the watermark are in its re-list window, the fifth is new.
    assert "5 jobs listed, 3 recorded, 1 still open" in second.stdout
    billed = db.execute(
        "SELECT build_id, status, billable_seconds FROM jobs WHERE billable ORDER BY build_id"
    ).fetchall()
    assert billed == [
        (done.id, "success", Decimal("60")),
        (running.id, "failed", Decimal("7200")),
        (manual.id, "success", Decimal("3600")),
        (later.id, "canceled", Decimal("30.5")),
    ]
    assert db.execute("SELECT build_id FROM reconcile_open_jobs").fetchall() == [(pending.id,)]


def test_classes_come_from_the_runners_tags_not_the_jobs(
    gitlab: GitLabFake, db: psycopg.Connection, bridge_env: dict[str, str]
) -> None:
    """The REST Job carries the job's own tags; billing needs the runner's (GET /runners/:id),
    and falls back to the job's when the runner was deleted since."""
    project = gitlab.add_project("acme-vision/segmentation")
    large = gitlab.add_runner(
        {"id": 13, "description": "large", "runner_type": "group_type", "tags": ["docker", "large"]}
    )
    start = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
    common = {
        "pipeline_id": 1,
        "status": "success",
        "created_at": start,
        "started_at": start,
        "finished_at": start + timedelta(seconds=60),
        "duration": 60.0,
    }
    on_large = gitlab.add_job(project, runner=large, tag_list=[], **common)
    deleted = large.__class__(99, "deleted", "instance_type", ["docker", "large"])
    on_deleted = gitlab.add_job(project, runner=deleted, tag_list=["large"], **common)
    assert reconcile(bridge_env).exit_code == 0
    classes = dict(db.execute("SELECT build_id, runner_class FROM jobs").fetchall())
    assert classes == {on_large.id: "large", on_deleted.id: "standard"}


def test_a_sweep_that_fails_half_way_moves_no_watermark_and_the_next_counts_nothing_twice(
    gitlab: GitLabFake, db: psycopg.Connection, bridge_env: dict[str, str]
) -> None:
    populate(gitlab, random.Random(7), PATHS[:2], jobs=600)
    second_project = list(gitlab.projects)[1]
    # The first page of the second project arrives, its second page never does.
    gitlab.fail(500, times=2, path=rf"/projects/{second_project}/jobs\?cursor=")

    failed = reconcile(bridge_env)
    assert failed.exit_code == 1
    assert failed.output.startswith("Error: GitLab at ")
    assert "failed 2 times" in failed.output
    assert "(last: HTTP 500)" in failed.output
    assert "Traceback" not in failed.output
    marks = dict(db.execute("SELECT project_id, watermark FROM reconcile_projects").fetchall())
    assert second_project not in marks, "the watermark only advances over what was stored"
    assert db.execute("SELECT status FROM reconcile_sweeps").fetchall() == [("failed",)]
    stored_early = db.execute(
        "SELECT count(*) FROM raw_events WHERE source = 'reconcile'"
    ).fetchone()[0]
    assert stored_early > 0

    retried = reconcile(bridge_env)
    assert retried.exit_code == 0, retried.output
    per_job = db.execute(
        "SELECT count(*), count(DISTINCT convert_from(body, 'UTF8')::jsonb"
        "->'job'->'id') FROM raw_events WHERE source = 'reconcile'"
    ).fetchone()
    assert per_job[0] == per_job[1], "a job listed twice is stored once"
    assert ledger_invoices(db, bridge_env["BRIDGE_RATES_FILE"]) == expected_invoices(gitlab)


def test_transient_errors_are_retried_with_backoff(
    gitlab: GitLabFake, db: psycopg.Connection, bridge_env: dict[str, str]
) -> None:
    populate(gitlab, random.Random(3), PATHS[:1], jobs=250)
    gitlab.fail(502, times=1, path=r"/jobs")
    gitlab.fail(429, times=1, path=r"/runners/")
    result = reconcile(bridge_env, "--retries", "2")
    assert result.exit_code == 0, result.output
    assert ledger_invoices(db, bridge_env["BRIDGE_RATES_FILE"]) == expected_invoices(gitlab)


def test_gitlab_down_or_slow_is_one_clear_line_and_a_failed_sweep(
    gitlab: GitLabFake, db: psycopg.Connection, bridge_env: dict[str, str]
) -> None:
    down = {**bridge_env, "BRIDGE_GITLAB_URL": f"http://127.0.0.1:{free_port()}"}
    result = reconcile(down)
    assert result.exit_code == 1
    assert result.output.startswith(
        f"Error: GitLab at {down['BRIDGE_GITLAB_URL']} is unavailable: GET /projects failed 2 times"
    )
    assert result.output.rstrip().endswith("(last: cannot connect)")
    assert len(result.output.strip().splitlines()) == 1

    gitlab.add_project("acme-vision/segmentation")
    gitlab.delay = 1.0
    slow = reconcile(bridge_env, "--timeout", "0.2")
    assert slow.exit_code == 1
    assert "(last: no answer within 0.2 s)" in slow.output
    statuses = db.execute("SELECT status, error IS NOT NULL FROM reconcile_sweeps").fetchall()
    assert statuses == [("failed", True), ("failed", True)]

    gitlab.delay = 0
    wrong_token = reconcile({**bridge_env, "BRIDGE_GITLAB_TOKEN": "glpat-wrong"})
    assert wrong_token.exit_code == 1
    assert "Error: GitLab rejected BRIDGE_GITLAB_TOKEN (401) on GET /projects" in wrong_token.output


def test_rebuild_from_stored_deliveries_reproduces_the_reconciled_ledger(
    gitlab: GitLabFake, db: psycopg.Connection, bridge_env: dict[str, str]
) -> None:
    populate(gitlab, random.Random(11), PATHS, jobs=400)
    assert reconcile(bridge_env).exit_code == 0
    before = db.execute(
        "SELECT build_id, status, billable, billable_seconds, runner_class, "
        "period, client FROM jobs ORDER BY build_id"
    ).fetchall()
    rebuilt = CliRunner().invoke(main, ["rebuild"], env=bridge_env)
    assert rebuilt.exit_code == 0, rebuilt.output
    after = db.execute(
        "SELECT build_id, status, billable, billable_seconds, runner_class, "
        "period, client FROM jobs ORDER BY build_id"
    ).fetchall()
    assert after == before


def test_finalizing_waits_for_a_sweep_that_started_after_the_period(
    gitlab: GitLabFake,
    db: psycopg.Connection,
    bridge_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    populate(
        gitlab,
        random.Random(5),
        PATHS[:1],
        jobs=90,
        start=datetime(2026, 9, 1, tzinfo=UTC),
        days=29,
    )
    finalize = ["invoice", "--client", "acme", "--period", "2026-09", "--finalize"]

    never = CliRunner().invoke(main, finalize, env=bridge_env)
    assert never.exit_code == 1
    assert "no reconciliation sweep has completed since period 2026-09 ended" in never.output
    assert "none ever completed" in never.output

    # A sweep that completed, but started before the month ended, does not count.
    db.execute(
        "INSERT INTO reconcile_sweeps (started_at, finished_at, status) VALUES "
        "('2026-09-30 23:00Z', '2026-10-01 00:10Z', 'completed')"
    )
    early = CliRunner().invoke(main, finalize, env=bridge_env)
    assert early.exit_code == 1
    assert "the last one started 2026-09-30T23:00:00+00:00" in early.output

    assert reconcile(bridge_env).exit_code == 0
    done = CliRunner().invoke(main, finalize, env=bridge_env)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["finalized"] is True

    forced = CliRunner().invoke(
        main,
        ["invoice", "--client", "acme", "--period", "2026-10", "--finalize", "--force"],
        env={**bridge_env, "BRIDGE_GITLAB_TOKEN": ""},
    )
    assert forced.exit_code == 0, forced.output
    assert "invoice acme 2026-10 finalized with --force" in caplog.text


def test_every_keeps_sweeping_through_outages_and_stops_on_sigterm(
    gitlab: GitLabFake, db: psycopg.Connection, bridge_env: dict[str, str], tmp_path: Path
) -> None:
    populate(gitlab, random.Random(9), PATHS[:1], jobs=50)
    log = tmp_path / "reconcile.log"
    with log.open("wb") as output:
        service = subprocess.Popen(
            [sys.executable, "-m", "bridge", "reconcile", "--every", "1", "--retries", "0"],
            env={**os.environ, **bridge_env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:

        def sweeps(status: str) -> int:
            query = "SELECT count(*) FROM reconcile_sweeps WHERE status = %s"
            return db.execute(query, (status,)).fetchone()[0]

        deadline = time.monotonic() + 20
        while sweeps("completed") < 1:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        gitlab.fail(503, times=1000)  # GitLab goes down: sweeps fail, the service stays
        while sweeps("failed") < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert service.poll() is None
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=15) == 0
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    text = log.read_text()
    assert "sweep failed: GitLab at" in text
    assert "Traceback" not in text


def test_a_skipped_job_that_runs_later_is_billed_after_the_second_sweep(
    gitlab: GitLabFake, db: psycopg.Connection, bridge_env: dict[str, str]
) -> None:
    """GitLab resets a skipped job when its pipeline is retried and runs it under the same
    id; the watermark must not have settled it."""
    project = gitlab.add_project("acme-vision/segmentation")
    runner = gitlab.add_runner(
        {"id": 12, "description": "cpu", "runner_type": "instance_type", "tags": ["docker"]}
    )
    start = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
    skipped = gitlab.add_job(project, pipeline_id=1, status="skipped", created_at=start)
    newer = gitlab.add_job(project, pipeline_id=1, status="created", created_at=start)
    first = reconcile(bridge_env)
    assert first.exit_code == 0, first.output
    assert "2 jobs listed, 0 recorded, 2 still open" in first.stdout

    skipped.started_at, skipped.runner = start + timedelta(hours=1), runner
    gitlab.finish(skipped, "success", start + timedelta(hours=1, minutes=2), 120.0)
    second = reconcile(bridge_env)
    assert second.exit_code == 0, second.output
    billed = db.execute("SELECT build_id, status, billable_seconds FROM jobs WHERE billable")
    assert billed.fetchall() == [(skipped.id, "success", Decimal("120"))]
    still_open = db.execute("SELECT build_id FROM reconcile_open_jobs").fetchall()
    assert still_open == [(newer.id,)]


def test_a_job_committed_after_a_listing_below_the_watermark_is_billed(
    gitlab: GitLabFake, db: psycopg.Connection, bridge_env: dict[str, str]
) -> None:
    """Job ids are taken before the job's row commits: a listing can see a higher id
    while a lower one is still invisible, and the watermark passes it."""
    project = gitlab.add_project("acme-vision/segmentation")
    runner = gitlab.add_runner(
        {"id": 12, "description": "cpu", "runner_type": "instance_type", "tags": ["docker"]}
    )
    start = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
    finished = {
        "status": "success",
        "created_at": start,
        "started_at": start,
        "finished_at": start + timedelta(seconds=60),
        "duration": 60.0,
        "runner": runner,
    }
    reserved = next(gitlab._ids)  # taken, not committed yet
    seen = gitlab.add_job(project, pipeline_id=1, **finished)
    assert reconcile(bridge_env).exit_code == 0
    assert db.execute("SELECT watermark FROM reconcile_projects").fetchone() == (seen.id,)

    late = Job(id=reserved, project_id=project.id, pipeline_id=1, **finished)
    project.jobs.append(late)
    assert reconcile(bridge_env).exit_code == 0
    billed = db.execute("SELECT build_id FROM jobs WHERE billable ORDER BY build_id").fetchall()
    assert billed == [(late.id,), (seen.id,)]


def test_a_sweep_ended_by_an_unexpected_error_is_recorded_as_failed(
    gitlab: GitLabFake,
    db: psycopg.Connection,
    bridge_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    populate(gitlab, random.Random(4), PATHS[:1], jobs=20)
    # A sweep whose process died mid-way (SIGKILL, power loss) is left `running`...
    db.execute("INSERT INTO reconcile_sweeps (started_at) VALUES ('2026-10-01 00:00Z')")

    def broken(*_args: Any) -> bytes:
        raise RuntimeError("a bug nobody foresaw")

    monkeypatch.setattr(rest, "envelope", broken)
    result = reconcile(bridge_env)
    assert result.exit_code == 1
    assert isinstance(result.exception, RuntimeError)
    sweeps = db.execute("SELECT status, error FROM reconcile_sweeps ORDER BY id").fetchall()
    # ... and the next sweep marks it failed; that sweep itself fails on the bug.
    assert sweeps == [
        ("failed", "abandoned: the process running it ended before it finished"),
        ("failed", "unexpected error: RuntimeError('a bug nobody foresaw')"),
    ]


def test_sweeps_show_in_the_metrics(
    gitlab: GitLabFake, db: psycopg.Connection, bridge_env: dict[str, str], api: TestClient
) -> None:
    populate(gitlab, random.Random(6), PATHS[:1], jobs=30)
    assert reconcile(bridge_env).exit_code == 0
    gitlab.fail(503, times=100)
    assert reconcile(bridge_env).exit_code == 1
    recorded = db.execute("SELECT sum(recorded) FROM reconcile_sweeps").fetchone()[0]
    assert recorded > 0
    text = api.get("/metrics").text
    assert 'bridge_reconcile_sweeps{status="completed"} 1.0' in text
    assert 'bridge_reconcile_sweeps{status="failed"} 1.0' in text
    assert 'bridge_reconcile_sweeps{status="running"} 0.0' in text
    assert f"bridge_reconcile_jobs_recorded {float(recorded)}" in text
    assert "bridge_reconcile_last_completed_timestamp_seconds 0.0" not in text
