"""Collector tokens, `POST /api/v1/usage-samples` and the resource-priced invoice lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from bridge.cli import main
from bridge.collector.upload import Uploader
from local.ports import free_port
from tests.bridge.fuzz import encoded, mutations
from tests.bridge.helpers import admin, post_event, usage
from tests.bridge.payloads import CPU_RUNNER, GPU_RUNNER, lifecycle
from tests.fixtures.bridge import ADMIN_TOKEN, BridgeProcess

RATES = """\
currency: EUR
classes:
  - {name: gpu, match_tags: [gpu], per_minute: "0.50", per_cpu_hour: "0.10",
     per_gb_hour: "0.01", per_gpu_hour: "2.00"}
  - {name: standard, match_tags: [], per_minute: "0.02", per_cpu_hour: "0.04"}
clients:
  acme-vision: acme
"""
HOST_TOKEN = "collector-token-of-runner-1-0123456789"
BUILD, SERVICE = "b1" * 32, "5e" * 32


@pytest.fixture
def rates_file(tmp_path: Path) -> Path:
    path = tmp_path / "rates.yml"
    path.write_text(RATES)
    return path


@pytest.fixture
def collector(bridge_env: dict[str, str]) -> dict[str, str]:
    """runner-1 registered with HOST_TOKEN; the headers its collector sends."""
    added = CliRunner().invoke(
        main,
        ["collectors", "add", "runner-1", "--token-stdin"],
        input=HOST_TOKEN + "\n",
        env=bridge_env,
    )
    assert added.stdout == "collector runner-1 added\n", added.output
    return {"Authorization": f"Bearer {HOST_TOKEN}"}


def sample(
    container: str,
    cpu: str,
    memory: str = "0",
    gpu: str = "0",
    *,
    job: int = 77,
    observed: str = "2026-10-03T10:00:00+00:00",
) -> dict[str, Any]:
    return {
        "job_id": job,
        "project_id": 101,
        "container_id": container,
        "started_at": "2026-10-03T09:00:00+00:00",
        "observed_at": observed,
        "cpu_seconds": cpu,
        "memory_gib_seconds": memory,
        "gpu_seconds": gpu,
    }


def finish(api: TestClient, build_id: int, runner: dict, finished: str, seconds: float) -> None:
    end = datetime.fromisoformat(finished).replace(tzinfo=UTC)
    for payload in lifecycle(
        build_id,
        runner=runner,
        started=end - timedelta(seconds=seconds),
        finished=end,
        duration=seconds,
    ):
        assert post_event(api, payload).status_code == 200


def test_collector_tokens_are_registered_idempotently(bridge_env: dict[str, str]) -> None:
    def add(host: str, token: str | None = None) -> Any:
        args = ["collectors", "add", host] + (["--token-stdin"] if token is not None else [])
        return CliRunner().invoke(main, args, input=token, env=bridge_env)

    made = add("runner-0")
    assert made.exit_code == 0
    assert made.stdout.startswith("bhc_")
    assert len(made.stdout.strip()) > 40
    assert "store the token now" in made.stderr
    again = add("runner-0")
    assert again.exit_code == 1
    assert again.output == (
        "Error: collector 'runner-0' already exists; give its token with "
        "--token-stdin to replace it\n"
    )

    assert add("runner-1", HOST_TOKEN + "\n").stdout == "collector runner-1 added\n"
    assert add("runner-1", HOST_TOKEN + "\n").stdout == "collector runner-1 unchanged\n"
    assert add("runner-1", "another-token-0123456789abcdef").stdout == (
        "collector runner-1 token replaced\n"
    )
    taken = add("runner-2", "another-token-0123456789abcdef")
    assert taken.exit_code == 1
    assert "Error: this token is already registered for collector 'runner-1'" in taken.output
    short = add("runner-3", "short")
    assert short.exit_code == 2
    assert "at least 24 printable characters" in short.output
    assert "Traceback" not in short.output + taken.output


def test_only_a_collector_token_may_post_and_bad_samples_are_422(
    api: TestClient, collector: dict[str, str]
) -> None:
    good = {"samples": [sample(BUILD, "1.5")]}
    for headers in (
        {},
        {"Authorization": f"Bearer {ADMIN_TOKEN}"},
        {"Authorization": "Bearer not-a-collector-token-at-all"},
    ):
        refused = api.post("/api/v1/usage-samples", json=good, headers=headers)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
    bad = [
        {"samples": []},
        {"samples": [sample(BUILD, "-1")]},
        {"samples": [sample("not-a-container", "1")]},
        {"samples": [{**sample(BUILD, "1"), "observed_at": "2026-10-03T10:00:00"}]},
        {"samples": [{**sample(BUILD, "1"), "host": "runner-2"}]},
        {"samples": [sample(BUILD, "1")] * 1001},
    ]
    for body in bad:
        response = api.post("/api/v1/usage-samples", json=body, headers=collector)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "invalid_request"
    assert api.post("/api/v1/usage-samples", json=good, headers=collector).json() == {
        "accepted": 1,
        "changed": 1,
    }


def test_resent_and_reordered_samples_count_once(
    api: TestClient, db: psycopg.Connection, collector: dict[str, str]
) -> None:
    def post(*samples: dict[str, Any]) -> dict[str, int]:
        response = api.post(
            "/api/v1/usage-samples", json={"samples": list(samples)}, headers=collector
        )
        assert response.status_code == 200, response.text
        return response.json()

    late = sample(BUILD, "30.5", "60", observed="2026-10-03T10:00:30+00:00")
    early = sample(BUILD, "10.25", "20", observed="2026-10-03T10:00:10+00:00")
    assert post(early, sample(SERVICE, "4")) == {"accepted": 2, "changed": 2}
    assert post(late, early, late) == {"accepted": 3, "changed": 1}
    for _ in range(3):  # a spool resent after an outage, and out of order
        assert post(early, late, sample(SERVICE, "4")) == {"accepted": 3, "changed": 0}
    rows = db.execute(
        "SELECT host, container_id, cpu_seconds, memory_gib_seconds FROM "
        "usage_measurements ORDER BY container_id"
    ).fetchall()
    assert [(h, c[:2], cpu, mem) for h, c, cpu, mem in rows] == [
        ("runner-1", "5e", 4, 0),
        ("runner-1", "b1", 30.5, 60),
    ]


def test_measured_usage_adds_priced_lines_and_never_changes_durations(
    api: TestClient,
    db: psycopg.Connection,
    collector: dict[str, str],
    bridge_env: dict[str, str],
) -> None:
    def post(*samples: dict[str, Any]) -> None:
        response = api.post(
            "/api/v1/usage-samples", json={"samples": list(samples)}, headers=collector
        )
        assert response.status_code == 200, response.text

    # Job 77 measured while it runs: nothing of it is billed until GitLab says it finished.
    post(sample(BUILD, "1800", "5400", "3600"), sample(SERVICE, "1800", "1800"))
    finish(api, 78, CPU_RUNNER, "2026-10-04T10:00:00", 900)
    post(sample("c3" * 32, "900", "3600", job=78))
    assert [line["runner_class"] for line in usage(api, "acme", "2026-10")["lines"]] == [
        "standard",
        "standard",
    ]
    finish(api, 77, GPU_RUNNER, "2026-10-03T10:00:00", 600)

    october = usage(api, "acme", "2026-10")
    assert [
        (line["kind"], line["runner_class"], line["billable_seconds"], line["amount"])
        for line in october["lines"]
    ] == [
        ("duration", "gpu", "600", "5.00"),
        ("duration", "standard", "900", "0.30"),
        ("cpu", "gpu", "3600", "0.10"),  # 1 CPU-hour at 0.10
        ("memory", "gpu", "7200", "0.02"),  # 2 GiB-hours at 0.01
        ("gpu", "gpu", "3600", "2.00"),  # 1 GPU-hour at 2.00
        ("cpu", "standard", "900", "0.01"),  # 0.25 CPU-hour at 0.04; memory is not priced
    ]
    cpu_line = october["lines"][2]
    assert cpu_line["unit"] == "cpu-hour"
    assert cpu_line["unit_price"] == "0.1"
    assert cpu_line["exact_amount"] == "0.1"
    assert october["total"] == "7.43"

    # October is finalized; the job's containers report more afterwards.
    db.execute("INSERT INTO reconcile_sweeps (finished_at, status) VALUES (now(), 'completed')")
    finalize = ["invoice", "--client", "acme", "--period", "2026-10", "--finalize"]
    assert CliRunner().invoke(main, finalize, env=bridge_env).exit_code == 0
    post(sample(BUILD, "2700", "5400", "3600", observed="2026-10-03T11:00:00+00:00"))
    frozen = admin(api, "/api/v1/invoices/acme/2026-10").json()
    assert frozen["total"] == "7.43"
    november = usage(api, "acme", "2026-11")
    assert [
        (line["kind"], line.get("for_period"), line["billable_seconds"], line["amount"])
        for line in november["lines"]
    ] == [("cpu", "2026-10", "900", "0.03")]


def test_the_uploader_keeps_what_may_succeed_later_and_drops_what_never_will(
    bridge_server: BridgeProcess, collector: dict[str, str]
) -> None:
    good, bad = sample(BUILD, "1"), sample(SERVICE, "1")
    bad["cpu_seconds"] = "-1"  # refused for good: a 422
    wrong = Uploader(bridge_server.url, "not-the-token-of-any-collector")
    assert wrong.send([good]) == ([], "bridge answered 401: unknown collector token")
    wrong.close()
    uploader = Uploader(bridge_server.url, HOST_TOKEN)
    assert uploader.send([bad]) == ([SERVICE], None)
    assert uploader.send([good]) == ([BUILD], None)
    uploader.close()
    gone = Uploader(f"http://127.0.0.1:{free_port()}", HOST_TOKEN)
    assert gone.send([good]) == ([], "bridge unreachable (ConnectError)")
    gone.close()


def test_collect_names_missing_or_bad_configuration(tmp_path: Path) -> None:
    missing = CliRunner().invoke(main, ["collect"], env={"BRIDGE_PUBLIC_URL": ""})
    assert missing.exit_code == 1
    assert missing.output.startswith("Error: missing configuration: BRIDGE_PUBLIC_URL")
    env = {
        "BRIDGE_PUBLIC_URL": "http://127.0.0.1:1",
        "BRIDGE_COLLECTOR_TOKEN": HOST_TOKEN,
        "BRIDGE_COLLECTOR_SPOOL_DIR": str(tmp_path),
    }
    interval = CliRunner().invoke(main, ["collect", "--collector-interval", "0"], env=env)
    assert interval.output == (
        "Error: BRIDGE_COLLECTOR_INTERVAL must be a number of seconds between 0.1 and 3600, "
        "got '0'\n"
    )
    (tmp_path / "file").write_text("")
    spool = CliRunner().invoke(
        main, ["collect"], env={**env, "BRIDGE_COLLECTOR_SPOOL_DIR": str(tmp_path / "file")}
    )
    assert spool.exit_code == 1
    assert spool.output.startswith(
        f"Error: BRIDGE_COLLECTOR_SPOOL_DIR {tmp_path / 'file'} is not usable"
    )
    (tmp_path / "spool.json").write_text("{not json")
    corrupt = CliRunner().invoke(main, ["collect"], env=env)
    assert corrupt.exit_code == 1
    assert corrupt.output.startswith(f"Error: {tmp_path / 'spool.json'} is not a spool")


def test_samples_show_in_the_metrics(api: TestClient, collector: dict[str, str]) -> None:
    posted = api.post(
        "/api/v1/usage-samples",
        json={"samples": [sample(BUILD, "1.5"), sample(SERVICE, "2")]},
        headers=collector,
    )
    assert posted.status_code == 200
    bad = {"samples": [sample(BUILD, "-1")]}
    assert api.post("/api/v1/usage-samples", json=bad, headers=collector).status_code == 422
    text = api.get("/metrics").text
    assert 'bridge_usage_samples_total{result="accepted"} 2.0' in text
    assert 'bridge_usage_samples_total{result="rejected"} 1.0' in text
    assert "bridge_usage_containers_changed_total 2.0" in text


VALID_BATCH = {"samples": [sample(BUILD, "1.5", "2", "0.5")]}


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=mutations(VALID_BATCH))
def test_any_value_in_any_sample_field_is_never_a_5xx(
    api: TestClient, collector: dict[str, str], body: Any
) -> None:
    response = api.post("/api/v1/usage-samples", content=encoded(body), headers=collector)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"code", "message", "request_id"}
    computed = admin(api, "/api/v1/usage?client=acme&period=2026-10")
    assert computed.status_code in (200, 404), computed.text
