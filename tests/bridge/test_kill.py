"""`bridge serve` killed, stopped and left without its database while 8 senders post.

The promise under test: a 2xx is only sent once the delivery is committed, so nothing that
was acknowledged is ever lost; everything else was answered with an error (or not at all)
and can be sent again, and a delivery sent again never counts twice.
"""

from __future__ import annotations

import json
import queue
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from local.postgres import LocalPostgres
from tests.bridge import reference
from tests.bridge.helpers import hook_headers, usage
from tests.bridge.payloads import CPU_RUNNER, GPU_RUNNER, LARGE_RUNNER, job_event
from tests.fixtures.bridge import start_bridge

SENDERS = 8


def deliveries(jobs: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """A running and a terminal event per job, keyed and shuffled, over two months."""
    rng = random.Random(seed)
    start = datetime(2026, 9, 20, tzinfo=UTC)
    events = []
    for build_id in range(1, jobs + 1):
        runner = rng.choice([GPU_RUNNER, CPU_RUNNER, LARGE_RUNNER])
        began = start + timedelta(minutes=build_id * 17)
        seconds = round(rng.uniform(1, 3600), rng.choice([0, 1, 2]))
        ended = began + timedelta(seconds=int(seconds) + 1)
        project = rng.choice(["acme-vision/a", "acme-nlp/b", "beta-lab/c"])
        status = rng.choice(["success", "success", "failed", "canceled"])
        events.append(job_event(build_id, "running", runner=runner, started=began, project=project))
        events.append(
            job_event(
                build_id,
                status,
                runner=runner,
                started=began,
                finished=ended,
                duration=seconds,
                project=project,
            )
        )
    rng.shuffle(events)
    return [(f"kill-{seed}-{index}", payload) for index, payload in enumerate(events)]


@dataclass
class Sent:
    acked: set[str] = field(default_factory=set)
    refused: dict[str, str] = field(default_factory=dict)  # key -> status or error


def send(
    url: str,
    batch: list[tuple[str, dict[str, Any]]],
    *,
    pace: float = 0.0,
    sent: Sent | None = None,
) -> Sent:
    """8 senders share the batch; each delivery is posted once. `sent` fills as they go."""
    work: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()
    for delivery in batch:
        work.put(delivery)
    sent, lock = sent or Sent(), threading.Lock()

    def sender() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while True:
                try:
                    key, payload = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    response = client.post(
                        "/hooks/gitlab",
                        content=json.dumps(payload),
                        headers=hook_headers(payload, key),
                    )
                    outcome = str(response.status_code)
                except httpx.TransportError as exc:
                    outcome = type(exc).__name__
                with lock:
                    if outcome.startswith("2"):
                        sent.acked.add(key)
                    else:
                        sent.refused[key] = outcome
                time.sleep(pace)

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sent


def wait_until(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def stored_keys(db: psycopg.Connection) -> set[str]:
    return {key for (key,) in db.execute("SELECT idempotency_key FROM raw_events")}


def assert_exact(url: str, batch: list[tuple[str, dict[str, Any]]]) -> None:
    expected = reference.invoices(batch)
    with httpx.Client(base_url=url) as client:
        for (client_slug, period), lines in expected.items():
            document = usage(client, client_slug, period)
            found = {
                line["runner_class"]: (line["jobs"], line["billable_seconds"], line["amount"])
                for line in document["lines"]
            }
            assert found == {
                name: (jobs, format(seconds.normalize(), "f"), str(amount))
                for name, (jobs, seconds, amount) in lines.items()
            }


def test_sigkill_loses_no_acknowledged_event(
    bridge_env: dict[str, str], db: psycopg.Connection, tmp_path: Path
) -> None:
    batch = deliveries(400, seed=1)
    server = start_bridge(bridge_env, tmp_path / "bridge.log")
    sent = Sent()

    def kill() -> None:
        wait_until(lambda: len(sent.acked) >= len(batch) // 4)
        server.process.kill()

    killer = threading.Thread(target=kill)
    killer.start()
    send(server.url, batch, pace=0.005, sent=sent)
    killer.join()
    server.process.wait()
    assert sent.refused, "the kill came after the last answer"
    # Killed: no answer at all (reset or refused), never an error status.
    assert not any(outcome.isdigit() for outcome in sent.refused.values()), sent.refused

    restarted = start_bridge(bridge_env, tmp_path / "bridge.log")
    try:
        assert sent.acked <= stored_keys(db), "an acknowledged event was lost"
        # GitLab would not resend; the reconciler would fill the gap. Here the senders do.
        again = send(restarted.url, [(k, p) for k, p in batch if k in sent.refused])
        assert again.refused == {}
        assert_exact(restarted.url, batch)
    finally:
        restarted.stop()


def test_postgres_stopped_and_started_mid_stream(
    own_postgres: LocalPostgres, bridge_env: dict[str, str], tmp_path: Path
) -> None:
    batch = deliveries(500, seed=2)
    env = {**bridge_env, "BRIDGE_DATABASE_URL": own_postgres.url()}
    server = start_bridge(env, tmp_path / "bridge.log")

    sent = Sent()

    def outage() -> None:
        # Down once a quarter is acknowledged; up again after a second and some refusals.
        wait_until(lambda: len(sent.acked) >= len(batch) // 4)
        own_postgres.stop()
        time.sleep(1.0)
        wait_until(lambda: len(sent.refused) >= SENDERS)
        own_postgres.start()

    interrupter = threading.Thread(target=outage)
    interrupter.start()
    try:
        send(server.url, batch, pace=0.01, sent=sent)
        interrupter.join()
        assert len(sent.acked) > len(batch) // 4, "acknowledged after the outage, too"
        assert server.process.poll() is None, "the bridge must survive the outage"
        assert set(sent.refused.values()) == {"503"}, "only 503s while the database is down"
        with psycopg.connect(own_postgres.url()) as conn:
            assert sent.acked <= stored_keys(conn)
        retried: dict[str, str] = sent.refused
        deadline = time.monotonic() + 30
        while retried:  # the senders retry what was not acknowledged, until it is
            assert time.monotonic() < deadline, f"still refused: {set(retried.values())}"
            retried = send(server.url, [(k, p) for k, p in batch if k in retried]).refused
        assert_exact(server.url, batch)
    finally:
        assert server.stop() == -signal.SIGTERM


def test_sigterm_finishes_the_request_in_flight(
    bridge_env: dict[str, str], db: psycopg.Connection, tmp_path: Path
) -> None:
    server = start_bridge(bridge_env, tmp_path / "bridge.log")
    end = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)
    running = job_event(7, "running", runner=CPU_RUNNER, started=end - timedelta(minutes=1))
    finished = job_event(
        7,
        "success",
        runner=CPU_RUNNER,
        started=end - timedelta(minutes=1),
        finished=end,
        duration=60.0,
    )
    assert send(server.url, [("k-running", running)]).acked == {"k-running"}

    answers: list[int] = []
    with psycopg.connect(bridge_env["BRIDGE_DATABASE_URL"]) as blocker:
        # Hold the job's row: the next delivery about it waits inside its transaction.
        blocker.execute("SELECT 1 FROM jobs WHERE build_id = 7 FOR UPDATE")
        in_flight = threading.Thread(
            target=lambda: answers.append(
                httpx.post(
                    f"{server.url}/hooks/gitlab",
                    content=json.dumps(finished),
                    headers=hook_headers(finished, "k-finished"),
                    timeout=30,
                ).status_code
            )
        )
        in_flight.start()
        time.sleep(0.5)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
        assert server.process.poll() is None, "stopped before its request in flight finished"
        blocker.rollback()
    in_flight.join()
    assert answers == [200]
    assert server.process.wait(timeout=30) == -signal.SIGTERM
    assert db.execute("SELECT status FROM jobs WHERE build_id = 7").fetchone() == ("success",)
