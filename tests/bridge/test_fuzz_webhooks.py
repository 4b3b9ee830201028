"""Any JSON value in any field of a Job Hook or Pipeline Hook: never a 5xx, always the error
envelope on a refusal, and every invoice of the ledger stays computable afterwards."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from bridge import invoices
from bridge.api.reports import CLIENT
from tests.bridge.fuzz import encoded, mutations
from tests.bridge.helpers import admin, hook_headers
from tests.bridge.payloads import CPU_RUNNER, job_event, pipeline_event

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
JOB = job_event(31, "success", runner=CPU_RUNNER, duration=42.5)
PIPELINE = pipeline_event(
    9, [{"id": 32, "status": "failed", "duration": 7.0, "runner": CPU_RUNNER}]
)


def check_answer(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"code", "message", "request_id"}
        assert error["message"]


def check_invoices(api: TestClient, db: psycopg.Connection) -> None:
    """Every (client, month) of the ledger has an invoice, through the API when the client
    id is one the API can be asked for (a GitLab group path), else through the library."""
    rates = api.app.state.bridge.rates
    pairs = db.execute("SELECT DISTINCT client, period FROM jobs WHERE period IS NOT NULL")
    for client, period in pairs.fetchall():
        if re.match(CLIENT, client):
            answer = admin(api, f"/api/v1/usage?client={client}&period={period}")
            assert answer.status_code == 200, answer.text
            document = answer.json()
        else:
            document = invoices.document(db, rates, client, period)
        assert all(Decimal(line["amount"]) >= 0 for line in document["lines"])


@FUZZ
@given(body=mutations(JOB))
def test_any_value_in_any_job_hook_field(
    api: TestClient, db: psycopg.Connection, body: Any
) -> None:
    response = api.post("/hooks/gitlab", content=encoded(body), headers=hook_headers(JOB))
    check_answer(response)
    check_invoices(api, db)


@FUZZ
@given(body=mutations(PIPELINE))
def test_any_value_in_any_pipeline_hook_field(
    api: TestClient, db: psycopg.Connection, body: Any
) -> None:
    response = api.post("/hooks/gitlab", content=encoded(body), headers=hook_headers(PIPELINE))
    check_answer(response)
    check_invoices(api, db)
