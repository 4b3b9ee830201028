"""The real `bridge serve` process: concurrent senders, Postgres outages, shutdown."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from local.postgres import LocalPostgres
from tests.bridge.helpers import hook_headers, usage
from tests.bridge.payloads import CPU_RUNNER, GPU_RUNNER, job_event
from tests.fixtures.bridge import BridgeProcess, start_bridge

END = datetime(2026, 10, 5, 12, 0, tzinfo=UTC)
SENDERS = 8


def send_together(url: str, deliveries: list[dict], keys: list[str | None]) -> list[str]:
    """One thread per delivery, all released by one barrier at the same moment."""
    barrier = threading.Barrier(len(deliveries))

    def send(delivery: tuple[dict, str | None]) -> str:
        payload, key = delivery
        with httpx.Client(base_url=url, timeout=30) as client:
            barrier.wait()
            response = client.post(
                "/hooks/gitlab", content=json.dumps(payload), headers=hook_headers(payload, key)
            )
        assert response.status_code == 200, response.text
        return response.json()["result"]

    with ThreadPoolExecutor(len(deliveries)) as pool:
        return list(pool.map(send, zip(deliveries, keys, strict=True)))


@pytest.mark.parametrize("with_key", [True, False], ids=["idempotency-key", "no-key"])
def test_eight_concurrent_senders_count_once(
    bridge_server: BridgeProcess, db: psycopg.Connection, with_key: bool
) -> None:
    for build_id in range(1, 26):
        payload = job_event(build_id, "success", runner=GPU_RUNNER, finished=END, duration=60.0)
        key = f"delivery-{build_id}" if with_key else None
        results = send_together(bridge_server.url, [payload] * SENDERS, [key] * SENDERS)
        assert Counter(results) == {"recorded": 1, "duplicate": SENDERS - 1}
    assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == 25
    with httpx.Client(base_url=bridge_server.url) as client:
        line = usage(client, "acme", "2026-10")["lines"][0]
    assert (line["jobs"], line["billable_seconds"], line["amount"]) == (25, "1500", "12.50")


def test_concurrent_different_statuses_end_terminal(
    bridge_server: BridgeProcess, db: psycopg.Connection
) -> None:
    """running, success and pending of one job at the same moment: success wins."""
    for build_id in range(100, 120):
        payloads = [
            job_event(build_id, "success", runner=CPU_RUNNER, finished=END, duration=30.0),
            job_event(build_id, "running", runner=CPU_RUNNER, started=END),
            job_event(build_id, "pending"),
        ]
        results = send_together(bridge_server.url, payloads, [None, None, None])
        # Whichever lands first is recorded; the rest only matter if they move the job on.
        assert "recorded" in results
    statuses = db.execute("SELECT DISTINCT status FROM jobs").fetchall()
    assert statuses == [("success",)]


def post(client: httpx.Client, payload: dict, key: str) -> httpx.Response:
    return client.post(
        "/hooks/gitlab", content=json.dumps(payload), headers=hook_headers(payload, key)
    )


def test_postgres_outage_gives_503_and_recovers_without_restart(
    own_postgres: LocalPostgres, bridge_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**bridge_env, "BRIDGE_DATABASE_URL": own_postgres.url()}
    server = start_bridge(env, tmp_path / "bridge.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            first = job_event(1, "success", runner=CPU_RUNNER, finished=END, duration=60.0)
            assert post(client, first, "k1").json() == {"result": "recorded"}

            own_postgres.stop()
            second = job_event(2, "success", runner=CPU_RUNNER, finished=END, duration=60.0)
            down = post(client, second, "k2")
            assert down.status_code == 503
            assert down.json()["error"]["code"] == "database_unavailable"
            assert client.get("/readyz").status_code == 503
            assert client.get("/healthz").status_code == 200
            assert "bridge_database_up 0.0" in client.get("/metrics").text
            assert server.process.poll() is None, "the bridge must keep running"

            own_postgres.start()
            deadline = time.monotonic() + 30
            while (response := post(client, second, "k2")).status_code == 503:
                assert time.monotonic() < deadline, "no recovery within 30 s"
                time.sleep(0.5)
            assert response.json() == {"result": "recorded"}
            assert client.get("/readyz").status_code == 200
            assert usage(client, "acme", "2026-10")["lines"][0]["jobs"] == 2
    finally:
        # uvicorn finishes in-flight requests, then re-raises SIGTERM as its exit status.
        assert server.stop() == -signal.SIGTERM
        assert "Application shutdown complete" in server.log.read_text()


def test_serve_refuses_to_start_with_an_invalid_rates_file(
    bridge_env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad-rates.yml"
    bad.write_text("currency: EUR\nclasses: [{name: gpu, match_tags: [gpu], per_minute: 0.5}]\n")
    with pytest.raises(RuntimeError) as error:
        start_bridge({**bridge_env, "BRIDGE_RATES_FILE": str(bad)}, tmp_path / "bad.log")
    log = (tmp_path / "bad.log").read_text()
    assert f"Error: {bad}: classes.0.per_minute: Value error, write prices as quoted" in log
    assert "Traceback" not in log
    assert "exited with 1" in str(error.value)


def test_serve_names_missing_configuration(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    with pytest.raises(RuntimeError):
        start_bridge(env, tmp_path / "empty.log")
    log = (tmp_path / "empty.log").read_text()
    assert "missing configuration: BRIDGE_DATABASE_URL" in log
    assert "BRIDGE_WEBHOOK_TOKEN" in log
