"""Hostile and unusual input cannot stop, stall or corrupt billing (issue 9, defects 1-4).

Each test here failed on the bridge before the fix: NaN durations killed the ingest writers
and every later delivery hung; infinities and absurd numbers were recorded and broke the
invoice; ids beyond bigint, NUL characters, overflowing timestamps and deep nesting were
plain-text 500s; a collector body was read whole before its token was looked at.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from bridge import jobs
from bridge.api.app import create_app
from bridge.cli import main
from bridge.settings import Settings
from tests.bridge.helpers import admin, hook_headers, post_event, usage
from tests.bridge.payloads import CPU_RUNNER, job_event
from tests.fixtures.bridge import ADMIN_TOKEN, BridgeProcess


def finished_job(build_id: int, seconds: float, **fields: Any) -> dict[str, Any]:
    return job_event(build_id, "success", runner=CPU_RUNNER, duration=seconds, **fields)


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The envelope, with the request id the answer's header names."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    error = response.json()["error"]
    assert error["request_id"] == response.headers["x-request-id"]
    return error


def raw_hook(client: httpx.Client | TestClient, body: bytes, timeout: float = 5) -> httpx.Response:
    headers = hook_headers({"object_kind": "build"})
    if isinstance(client, TestClient):
        return client.post("/hooks/gitlab", content=body, headers=headers)
    return client.post("/hooks/gitlab", content=body, headers=headers, timeout=timeout)


def test_valid_deliveries_after_poison_ones_are_recorded_within_a_second_and_billed_exactly(
    bridge_server: BridgeProcess,
) -> None:
    poison = [b"NaN", b"NaN", b"NaN", b"Infinity", b"-Infinity", b"1e400"]
    with httpx.Client(base_url=bridge_server.url) as client:
        for number, literal in enumerate(poison, start=1):
            body = json.dumps(finished_job(number, 1.0)).replace(
                '"build_duration": 1.0', '"build_duration": ' + literal.decode()
            )
            response = raw_hook(client, body.encode())
            assert response.status_code == 422, response.text
            assert "build_duration" in error_of(response)["message"]

        seconds = [Decimal(n) / 4 for n in range(1, 21)]
        for number, duration in enumerate(seconds, start=100):
            started = time.monotonic()
            response = post_event(client, finished_job(number, float(duration)))
            assert response.status_code == 200, response.text
            assert response.json() == {"result": "recorded"}
            assert time.monotonic() - started < 1.0
        document = usage(client, "acme", "2026-10")
    assert document["lines"][0]["jobs"] == len(seconds)
    assert Decimal(document["lines"][0]["billable_seconds"]) == sum(seconds)
    # 52.5 s at 0.02 per minute.
    assert document["lines"][0]["amount"] == "0.02"
    assert Decimal(document["lines"][0]["exact_amount"]) == sum(seconds) * Decimal("0.02") / 60


@pytest.mark.parametrize("duration", ["Infinity", "-Infinity", "1e300", "-5", "NaN", "1e400"])
def test_non_finite_negative_and_absurd_durations_are_refused_and_invoices_stay_computable(
    api: TestClient, db: psycopg.Connection, duration: str
) -> None:
    body = json.dumps(finished_job(7, 1.0)).replace(
        '"build_duration": 1.0', f'"build_duration": {duration}'
    )
    response = raw_hook(api, body.encode())
    assert response.status_code == 422, response.text
    assert error_of(response)["message"].startswith("build_duration: ")
    pipeline = {
        "object_kind": "pipeline",
        "object_attributes": {"id": 5},
        "project": {"id": 1, "path_with_namespace": "acme-vision/x"},
        "builds": [{"id": 8, "status": "success", "duration": 1.0, "runner": CPU_RUNNER}],
    }
    body = json.dumps(pipeline).replace('"duration": 1.0', f'"duration": {duration}')
    response = raw_hook(api, body.encode())
    assert response.status_code == 422, response.text
    assert error_of(response)["message"].startswith("builds.0.duration: ")
    assert db.execute("SELECT count(*) FROM raw_events").fetchone()[0] == 0

    assert post_event(api, finished_job(9, 30.0)).status_code == 200
    assert usage(api, "acme", "2026-10")["lines"][0]["billable_seconds"] == "30"


def _with(payload: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(payload))
    *parents, last = path.split(".")
    node = copy
    for part in parents:
        node = node[part]
    node[last] = value
    return copy


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("build_id", 2**64),
        ("build_id", 2**63),
        ("build_id", -1),
        ("project_id", 2**64),
        ("pipeline_id", 2**70),
        ("runner.id", 2**64),
        ("project.id", 2**64),
        ("build_name", "train\x00"),
        ("project.path_with_namespace", "acme\x00/x"),
        ("runner.tags", ["docker\x00"]),
        ("build_finished_at_iso", "9999-12-31T23:59:59-01:00"),
        ("build_finished_at", "9999-12-31 23:59:59 -0100"),
        ("build_started_at_iso", "0001-01-01T00:00:00+01:00"),
        ("build_created_at_iso", "1900-01-01T00:00:00Z"),
    ],
)
def test_values_postgres_cannot_store_are_a_4xx_naming_the_field(
    api: TestClient, db: psycopg.Connection, path: str, value: Any
) -> None:
    response = post_event(api, _with(finished_job(3, 10.0), path, value))
    assert response.status_code == 422, response.text
    assert error_of(response)["message"].startswith(path)
    assert db.execute("SELECT count(*) FROM raw_events").fetchone()[0] == 0


def test_deeply_nested_json_and_lone_surrogates_are_a_400(api: TestClient) -> None:
    surrogate = json.dumps(finished_job(3, 1.0)).replace('"train"', '"\\ud800"', 1)
    response = raw_hook(api, surrogate.encode())
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == "malformed_json"

    depth = 100_000
    nested = b'{"object_kind": "build", "x": ' + b"[" * depth + b"]" * depth + b"}"
    response = raw_hook(api, nested)
    assert response.status_code == 400, response.text
    assert error_of(response)["code"] == "malformed_json"
    in_a_run = api.post(
        "/api/v1/runs",
        content=b"[" * depth + b"]" * depth,
        headers={"Authorization": "Bearer x.y.z"},
    )
    assert in_a_run.status_code == 401
    error_of(in_a_run)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (f"/api/v1/jobs?before={2**64}", "before"),
        ("/api/v1/jobs?before=-3", "before"),
        ("/api/v1/jobs?project=%00", "project"),
        ("/api/v1/jobs?status=a%00b", "status"),
        ("/api/v1/jobs?since=9999-12-31T23:59:59-01:00", "since"),
        ("/api/v1/jobs?since=2026-01-01T00:00:00", "since"),
        (f"/api/v1/jobs/{2**64}", "build_id"),
        ("/api/v1/usage?client=acme%00&period=2026-10", "client"),
    ],
)
def test_query_values_postgres_cannot_store_are_a_422_naming_the_field(
    api: TestClient, query: str, field: str
) -> None:
    response = admin(api, query)
    assert response.status_code == 422, response.text
    assert field in error_of(response)["message"]


def test_an_unexpected_error_is_a_logged_json_500_with_a_request_id(
    api: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("a bug nobody foresaw")

    monkeypatch.setattr(jobs, "list_jobs", broken)
    with caplog.at_level(logging.ERROR, logger="bridge.api"):
        response = api.get(
            "/api/v1/jobs",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Request-Id": "trace-42"},
        )
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "code": "internal_error",
            "message": "unexpected error; quote request id trace-42",
            "request_id": "trace-42",
        }
    }
    assert response.headers["x-request-id"] == "trace-42"
    logged = [r for r in caplog.records if "trace-42" in r.getMessage()]
    assert logged
    assert logged[0].exc_info is not None, "logged with its traceback"
    assert "RuntimeError: a bug nobody foresaw" in caplog.text


def _send_head(port: int, path: str, headers: dict[str, str], first_bytes: bytes) -> bytes:
    """Send a request's head and the first bytes of its body, then read the answer."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode() + b"\r\n" + first_bytes)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def test_a_declared_oversized_body_is_refused_before_it_is_read(
    bridge_server: BridgeProcess,
) -> None:
    """50 MB declared, a few bytes sent: the answer comes at once, on every POST route,
    whatever the token (the old bridge waited for the 50 MB before its 401)."""
    port = int(bridge_server.url.rsplit(":", 1)[1])
    for path in ("/api/v1/usage-samples", "/api/v1/runs", "/hooks/gitlab", "/api/v1/jobs"):
        started = time.monotonic()
        answer = _send_head(
            port,
            path,
            {"Authorization": "Bearer bogus", "Content-Length": str(50 * 1024 * 1024)},
            b'{"samples": [',
        )
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert time.monotonic() - started < 2


def test_a_streamed_body_is_cut_at_the_limit(settings: Settings, bridge_env: dict) -> None:
    small = Settings(**{**settings.__dict__, "max_samples_bytes": 4096, "max_run_bytes": 4096})
    chunks = [b'{"samples": ['] + [b" " * 1024] * 10

    with TestClient(create_app(small)) as client:
        token = "h" * 32
        added = CliRunner().invoke(
            main, ["collectors", "add", "runner-1", "--token-stdin"], input=token, env=bridge_env
        )
        assert added.exit_code == 0, added.output
        response = client.post(
            "/api/v1/usage-samples",
            content=iter(chunks),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 413, response.text
        assert error_of(response)["code"] == "body_too_large"
        bogus = client.post(
            "/api/v1/usage-samples", content=iter(chunks), headers={"Authorization": "Bearer x"}
        )
        assert bogus.status_code == 401, "the token is checked before the body is read"


def test_ingest_that_cannot_progress_answers_503_in_time_and_readyz_says_so(
    settings: Settings, db_url: str
) -> None:
    quick = Settings(**{**settings.__dict__, "ingest_timeout": 1.0})
    with TestClient(create_app(quick)) as client:
        assert client.get("/readyz").status_code == 200
        with psycopg.connect(db_url) as blocker:
            blocker.execute("LOCK TABLE raw_events IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            stuck = post_event(client, finished_job(41, 5.0))
            assert time.monotonic() - started < 3
            assert stuck.status_code == 503, stuck.text
            assert error_of(stuck)["code"] == "ingest_timeout"
            time.sleep(0.2)
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert error_of(ready)["code"] == "ingest_stalled"
            blocker.rollback()
        deadline = time.monotonic() + 10
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # The delivery that was not confirmed in time was still recorded, exactly once.
        again = post_event(client, finished_job(42, 5.0))
        assert again.json() == {"result": "recorded"}
        assert admin(client, "/api/v1/jobs/41").status_code == 200
