"""Health, readiness, metrics, OpenAPI, and registering clients from the CLI."""

from __future__ import annotations

import psycopg
from click.testing import CliRunner
from fastapi.testclient import TestClient

from bridge.api.app import create_app
from bridge.auth import CLIENT_TOKEN_PREFIX
from bridge.cli import main
from bridge.settings import Settings
from local.postgres import LocalPostgres
from tests.bridge.helpers import post_event
from tests.bridge.payloads import job_event
from tests.fixtures.postgres import create_database


def test_health_and_readiness(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.get("/readyz").json() == {"status": "ready"}


def test_not_ready_while_migrations_are_pending(settings: Settings, postgres: LocalPostgres):
    empty = Settings(**{**settings.__dict__, "database_url": create_database(postgres)})
    with TestClient(create_app(empty)) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "schema_outdated"
    assert "run bridge migrate" in response.json()["error"]["message"]


def test_metrics_count_events_by_result_and_latency(api: TestClient) -> None:
    post_event(api, job_event(1, "pending"), key="a")
    post_event(api, job_event(1, "pending"), key="a")
    post_event(api, {"object_kind": "push"})
    api.post("/hooks/gitlab", content=b"{", headers={"X-Gitlab-Token": "test-webhook-token"})
    text = api.get("/metrics").text
    for sample in (
        'bridge_webhook_events_total{result="recorded"} 1.0',
        'bridge_webhook_events_total{result="duplicate"} 1.0',
        'bridge_webhook_events_total{result="ignored"} 1.0',
        'bridge_webhook_events_total{result="rejected"} 1.0',
        "bridge_webhook_ingest_seconds_count 4.0",
        "bridge_ledger_conflicts 0.0",
        "bridge_database_up 1.0",
    ):
        assert sample in text


def test_openapi_documents_every_route(api: TestClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    for path in (
        "/hooks/gitlab",
        "/api/v1/usage",
        "/api/v1/invoices/{client}/{period}",
        "/api/v1/jobs",
        "/api/v1/jobs/{build_id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths


def test_unknown_route_uses_the_error_envelope(api: TestClient) -> None:
    response = api.get("/nope")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": "not_found",
            "message": "Not Found",
            "request_id": response.headers["x-request-id"],
        }
    }
    invalid = api.get("/api/v1/usage?client=acme&period=2026-13",
                      headers={"Authorization": "Bearer test-admin-token"})  # fmt: skip
    assert invalid.status_code == 422
    assert invalid.json()["error"]["code"] == "invalid_request"
    assert "period" in invalid.json()["error"]["message"]


def test_clients_add_prints_the_token_once(db_url: str, db: psycopg.Connection) -> None:
    env = {"BRIDGE_DATABASE_URL": db_url}
    added = CliRunner().invoke(main, ["clients", "add", "acme"], env=env)
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()
    assert token.startswith(CLIENT_TOKEN_PREFIX)
    assert "cannot be shown again" in added.stderr
    again = CliRunner().invoke(main, ["clients", "add", "acme"], env=env)
    assert again.exit_code == 1
    assert "client 'acme' already exists" in again.output
    invalid = CliRunner().invoke(main, ["clients", "add", "Acme Corp"], env=env)
    assert invalid.exit_code == 2
    assert "must be a GitLab group path" in invalid.output
    assert db.execute("SELECT count(*) FROM clients").fetchone()[0] == 1
