"""`POST /hooks/gitlab`: what GitLab really sends is recorded once; bad input gets a clear 4xx."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook

from bridge.api.app import create_app
from bridge.settings import Settings
from tests.bridge.helpers import admin, hook_headers, post_event, usage
from tests.bridge.payloads import CPU_RUNNER, GPU_RUNNER, job_event, lifecycle

START = datetime(2026, 10, 5, 12, 0, 0, tzinfo=UTC)
END = datetime(2026, 10, 5, 12, 2, 0, tzinfo=UTC)


def count(db: psycopg.Connection, table: str) -> int:
    return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - fixed names


def test_job_lifecycle_is_recorded_and_billed(api: TestClient, db: psycopg.Connection) -> None:
    for index, payload in enumerate(
        lifecycle(7, runner=GPU_RUNNER, started=START, finished=END, duration=120.0)
    ):
        response = post_event(api, payload, key=f"k{index}")
        assert response.status_code == 200
        assert response.json() == {"result": "recorded"}
    job = admin(api, "/api/v1/jobs/7").json()
    assert job["status"] == "success"
    assert job["runner_tags"] == ["gpu", "docker"]
    assert (
        job["sha"] == lifecycle(7, runner=None, started=START, finished=END, duration=1)[0]["sha"]
    )  # from `sha`, never from commit.id (which is the pipeline id in job events)
    assert job["pipeline_id"] == 9001
    lines = usage(api, "acme", "2026-10")["lines"]
    assert lines == [
        {
            "kind": "duration",
            "runner_class": "gpu",
            "jobs": 1,
            "billable_seconds": "120",
            "amount": "1.00",
            "exact_amount": "1",
        }
    ]


def test_every_accepted_event_is_stored_raw(api: TestClient, db: psycopg.Connection) -> None:
    payload = job_event(8, "running", runner=CPU_RUNNER, started=START)
    post_event(api, payload, key="raw-1")
    body = json.dumps(payload, indent=1).encode()
    api.post("/hooks/gitlab", content=body, headers=hook_headers(payload, "raw-2"))
    stored, headers = db.execute("SELECT body, headers FROM raw_events ORDER BY id").fetchall()[1]
    assert bytes(stored) == body  # byte for byte, as GitLab sent it
    assert headers["idempotency-key"] == "raw-2"
    assert headers["x-gitlab-event"] == "Job Hook"
    assert "x-gitlab-token" not in headers  # secrets are never stored


@pytest.mark.parametrize("style", ["iso", "millis", "legacy"])
def test_both_timestamp_formats_give_the_same_job(api: TestClient, style: str) -> None:
    payload = job_event(
        9, "success", runner=CPU_RUNNER, started=START, finished=END, duration=None, style=style
    )
    assert post_event(api, payload).json() == {"result": "recorded"}
    job = admin(api, "/api/v1/jobs/9").json()
    assert job["started_at"] == "2026-10-05T12:00:00+00:00"
    assert job["finished_at"] == "2026-10-05T12:02:00+00:00"
    assert job["billable_seconds"] == "120.0"  # finished - started, since duration is null


def test_runner_is_null_before_pickup(api: TestClient) -> None:
    assert post_event(api, job_event(10, "pending", runner=None)).json()["result"] == "recorded"
    job = admin(api, "/api/v1/jobs/10").json()
    assert job["runner_id"] is None
    assert job["billable"] is False


def test_out_of_order_terminal_is_never_overwritten(api: TestClient) -> None:
    created, pending, running, success = lifecycle(
        11, runner=CPU_RUNNER, started=START, finished=END, duration=120.0
    )
    for payload in (success, running, created, pending):
        post_event(api, payload)
    job = admin(api, "/api/v1/jobs/11").json()
    assert job["status"] == "success"
    assert job["billable_seconds"] == "120.0"


def test_same_event_1000_times_counts_once(api: TestClient, db: psycopg.Connection) -> None:
    payload = job_event(12, "success", runner=CPU_RUNNER, started=START, finished=END,
                        duration=120.0)  # fmt: skip
    results = [post_event(api, payload, key="same-key").json()["result"] for _ in range(500)]
    # Older GitLab sends no Idempotency-Key: (build id, status) dedupes those.
    results += [post_event(api, payload).json()["result"] for _ in range(500)]
    assert results.count("recorded") == 1
    assert results.count("duplicate") == 999
    assert count(db, "jobs") == 1
    assert usage(api, "acme", "2026-10")["lines"][0]["jobs"] == 1
    assert usage(api, "acme", "2026-10")["total"] == "0.04"


def test_conflicting_terminal_fact_is_kept_not_billed(api: TestClient) -> None:
    first = job_event(13, "success", runner=CPU_RUNNER, started=START, finished=END,
                      duration=120.0)  # fmt: skip
    disagreeing = job_event(13, "failed", runner=CPU_RUNNER, started=START, finished=END,
                            duration=3000.0)  # fmt: skip
    assert post_event(api, first).json()["result"] == "recorded"
    assert post_event(api, disagreeing).json()["result"] == "recorded"
    assert post_event(api, disagreeing).json()["result"] == "duplicate"
    document = usage(api, "acme", "2026-10")
    assert document["lines"][0]["billable_seconds"] == "120"
    assert document["total"] == "0.04"
    assert len(document["conflicts"]) == 1
    conflict = document["conflicts"][0]
    assert conflict["recorded"] == {"status": "success", "billable_seconds": "120",
                                    "runner_id": 12}  # fmt: skip
    assert conflict["incoming"]["billable_seconds"] == "3000"
    metrics = api.get("/metrics").text
    assert "bridge_ledger_conflicts 1.0" in metrics
    assert admin(api, "/api/v1/jobs/13").json()["conflicts"][0]["incoming"]["status"] == "failed"


def test_unknown_well_formed_kinds_are_ignored(api: TestClient, db: psycopg.Connection) -> None:
    for payload in (
        {"object_kind": "push", "ref": "refs/heads/main"},
        {"object_kind": "deployment", "status": "success"},
        {"event_name": "user_create", "user_id": 4},
    ):
        response = post_event(api, payload)
        assert response.status_code == 200
        assert response.json() == {"result": "ignored"}
    assert count(db, "raw_events") == 0


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body["error"]


@pytest.mark.parametrize("token", [None, "", "wrong", "test-webhook-token "])
def test_wrong_or_missing_token_is_401(api: TestClient, token: str | None) -> None:
    headers = hook_headers({"object_kind": "build"})
    del headers["X-Gitlab-Token"]
    if token is not None:
        headers["X-Gitlab-Token"] = token
    response = api.post("/hooks/gitlab", content=b"{}", headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        (b"{not json", 400, "malformed_json", "body is not valid JSON"),
        (b"\xff\xfe\x00garbage", 400, "malformed_json", "body is not valid JSON"),
        (b"", 400, "malformed_json", "body is not valid JSON"),
        (b"[1, 2]", 422, "invalid_event", "body: expected a JSON object"),
        (b'{"build_id": 1}', 422, "invalid_event", "object_kind: missing"),
        (b'{"object_kind": 5}', 422, "invalid_event", "object_kind: expected a string"),
        (b'{"object_kind": "build", "build_id": "12", "build_status": "success",'
         b' "project": {"path_with_namespace": "a/b"}}',
         422, "invalid_event", "build_id: Input should be a valid integer"),
        (b'{"object_kind": "build", "build_id": 1, "build_status": "success"}',
         422, "invalid_event", "project.path_with_namespace: missing"),
        (b'{"object_kind": "build", "build_id": 1, "build_status": "success",'
         b' "project": {"path_with_namespace": "a/b"}, "build_finished_at": "yesterday"}',
         422, "invalid_event", "build_finished_at: Value error, not a GitLab timestamp"),
        (b'{"object_kind": "build", "build_id": 1, "build_status": "success",'
         b' "project": {"path_with_namespace": "a/b"}, "build_duration": "12"}',
         422, "invalid_event", "build_duration: Input should be a valid number"),
        (b'{"object_kind": "build", "build_id": 1, "build_status": "success",'
         b' "project": {"path_with_namespace": "a/b"}, "runner": {"id": 1, "tags": "gpu"}}',
         422, "invalid_event", "runner.tags: Input should be a valid list"),
        (b'{"object_kind": "pipeline", "object_attributes": {"id": 1},'
         b' "project": {"path_with_namespace": "a/b"}, "builds": [{"id": 2}]}',
         422, "invalid_event", "builds.0.status: Field required"),
    ],
)  # fmt: skip
def test_bad_bodies_get_a_clear_4xx_and_change_nothing(
    api: TestClient, db: psycopg.Connection, body: bytes, status: int, code: str, message: str
) -> None:
    response = api.post("/hooks/gitlab", content=body, headers=hook_headers({}))
    assert response.status_code == status
    error = error_of(response)
    assert error["code"] == code
    assert message in error["message"]
    assert count(db, "raw_events") == 0
    assert count(db, "jobs") == 0


def test_oversized_body_is_413(settings: Settings) -> None:
    small = Settings(**{**settings.__dict__, "max_webhook_bytes": 1000})
    with TestClient(create_app(small)) as client:
        payload = job_event(14, "pending")
        payload["padding"] = "x" * 2000
        response = post_event(client, payload)
        assert response.status_code == 413
        assert error_of(response)["code"] == "body_too_large"
        # Without a Content-Length (chunked), the limit holds as well.
        chunks = iter([json.dumps(payload).encode()[:800], json.dumps(payload).encode()[800:]])
        response = client.post("/hooks/gitlab", content=chunks, headers=hook_headers(payload))
        assert response.status_code == 413


def test_overlong_idempotency_key_is_400(api: TestClient) -> None:
    response = post_event(api, job_event(15, "pending"), key="k" * 201)
    assert response.status_code == 400
    assert error_of(response)["code"] == "invalid_idempotency_key"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=20,
    )
    | st.fixed_dictionaries(
        {"object_kind": st.sampled_from(["build", "pipeline"])},
        optional={
            "build_id": st.integers() | st.text() | st.none(),
            "build_status": st.text() | st.none(),
            "project": st.dictionaries(st.text(), st.text()) | st.none(),
            "runner": st.dictionaries(st.text(), st.integers()) | st.none(),
            "builds": st.lists(st.dictionaries(st.text(), st.integers())),
            "object_attributes": st.dictionaries(st.text(), st.integers()),
        },
    )
)
def test_no_json_body_ever_causes_a_5xx(api: TestClient, body: object) -> None:
    response = api.post("/hooks/gitlab", content=json.dumps(body), headers=hook_headers({}))
    assert response.status_code < 500, response.text


SIGNING_KEY = "whsec_" + base64.b64encode(b"k" * 32).decode()


@pytest.fixture
def signed_api(settings: Settings):
    signing = Settings(**{**settings.__dict__, "webhook_signing_key": SIGNING_KEY})
    with TestClient(create_app(signing)) as client:
        yield client


def signed_headers(body: bytes, *, key: str = SIGNING_KEY, at: float | None = None) -> dict:
    moment = datetime.fromtimestamp(at if at is not None else time.time(), tz=UTC)
    signature = Webhook(key).sign("msg-1", moment, body.decode())
    return {
        **hook_headers({"object_kind": "build"}),
        "webhook-id": "msg-1",
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
    }


def test_valid_standard_webhooks_signature_is_accepted(signed_api: TestClient) -> None:
    body = json.dumps(job_event(16, "pending")).encode()
    response = signed_api.post("/hooks/gitlab", content=body, headers=signed_headers(body))
    assert response.json() == {"result": "recorded"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda h, b: h.pop("webhook-signature"), "missing webhook-signature"),
        (lambda h, b: h.update({"webhook-signature": "v1,AAAA"}), "No matching signature"),
        (lambda h, b: h.update({"webhook-signature": "garbage"}), "webhook-signature rejected"),
        (lambda h, b: h.update({"webhook-id": "msg-2"}), "No matching signature"),
        (lambda h, b: h.update(signed_headers(b, at=time.time() - 600)), "too old"),
        (lambda h, b: h.update(signed_headers(b, at=time.time() + 600)), "too new"),
        (lambda h, b: h.update(signed_headers(b, key="whsec_" + base64.b64encode(b"x" * 32)
                                              .decode())), "No matching signature"),
    ],
)  # fmt: skip
def test_bad_signature_is_401(signed_api: TestClient, mutate, message: str) -> None:
    body = json.dumps(job_event(17, "pending")).encode()
    headers = signed_headers(body)
    mutate(headers, body)
    response = signed_api.post("/hooks/gitlab", content=body, headers=headers)
    assert response.status_code == 401
    assert message in error_of(response)["message"]


def test_signature_covers_the_raw_body(signed_api: TestClient) -> None:
    body = json.dumps(job_event(18, "pending")).encode()
    headers = signed_headers(body)
    tampered = body.replace(b'"pending"', b'"success"')
    assert signed_api.post("/hooks/gitlab", content=tampered, headers=headers).status_code == 401
