"""`POST /api/v1/hpc-usage` and the `hpc` invoice lines it produces (no cluster needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import invoices
from bridge.auth import add_client
from bridge.billing import load_rates, next_period
from tests.bridge.helpers import admin
from tests.bridge.test_provenance import JOB_ID, PIPELINE_ID, PROJECT, mint
from tests.fixtures.bridge import RATES_YAML

HPC_RATES = RATES_YAML + 'hpc: {per_cpu_hour: "0.90", per_gpu_hour: "2.40"}\n'
USAGE: dict[str, Any] = {
    "cluster": "login.hpc.example",
    "slurm_job_id": "4242",
    "state": "COMPLETED",
    "exit_code": 0,
    "elapsed_seconds": 3725,
    "alloc_cpus": 8,
    "alloc_gpus": 0,
    "alloc_memory_mb": 16384,
    "partition": "batch",
    "mlflow_run_id": "0123456789abcdef0123456789abcdef",
    "job_id": JOB_ID,
    "pipeline_id": PIPELINE_ID,
    "project_path": PROJECT,
}


@pytest.fixture
def rates_file(tmp_path: Path) -> Path:
    path = tmp_path / "rates.yml"
    path.write_text(HPC_RATES)
    return path


@pytest.fixture(autouse=True)
def _client_acme(db: psycopg.Connection) -> None:
    """The billing client exists (`bridge clients add acme`), as before any invoice."""
    add_client(db, "acme")


def post(client: TestClient, token: str | None, body: Any = USAGE) -> Any:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/api/v1/hpc-usage", content=content, headers=headers)


def hpc_lines(client: TestClient, period: str) -> list[dict[str, Any]]:
    answer = admin(client, f"/api/v1/usage?client=acme&period={period}")
    assert answer.status_code == 200, answer.text
    return [line for line in answer.json()["lines"] if line["kind"] == "hpc"]


def this_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def test_usage_is_billed_per_cpu_hour_and_gpu_hour_to_the_cent(runs_api: TestClient, keys) -> None:
    assert post(runs_api, mint(keys["current"])).status_code == 201
    gpu_job = {**USAGE, "slurm_job_id": "4243", "alloc_gpus": 2, "job_id": JOB_ID + 1}
    assert post(runs_api, mint(keys["current"], job_id=str(JOB_ID + 1)), gpu_job).status_code == 201

    lines = hpc_lines(runs_api, this_month())

    # 2 x 3725 s x 8 CPUs = 59600 CPU-seconds = 16.5555... h x 0.90 = 14.90 EUR (half-up).
    assert lines == [
        {
            "kind": "hpc",
            "runner_class": "login.hpc.example",
            "jobs": 2,
            "billable_seconds": "59600",
            "unit": "cpu-hour",
            "unit_price": "0.9",
            "amount": "14.90",
            "exact_amount": "14.9",
        },
        {
            "kind": "hpc",
            "runner_class": "login.hpc.example",
            "jobs": 1,
            "billable_seconds": "7450",
            "unit": "gpu-hour",
            "unit_price": "2.4",
            "amount": "4.97",
            "exact_amount": "4.966666666666666666666666667",
        },
    ]


def test_a_repeat_is_a_duplicate_and_a_different_report_is_refused(
    runs_api: TestClient, keys
) -> None:
    token = mint(keys["current"])
    assert post(runs_api, token).status_code == 201

    again = post(runs_api, token)
    different = post(runs_api, token, {**USAGE, "elapsed_seconds": 99_999})

    assert (again.status_code, again.json()["result"]) == (200, "duplicate")
    assert different.status_code == 409
    assert different.json()["error"]["code"] == "hpc_usage_conflict"
    assert hpc_lines(runs_api, this_month())[0]["billable_seconds"] == str(3725 * 8)


def test_identity_comes_from_the_token(runs_api: TestClient, keys) -> None:
    other_job = post(runs_api, mint(keys["current"]), {**USAGE, "job_id": JOB_ID + 5})
    no_token = post(runs_api, None)

    assert other_job.status_code == 422
    assert "job_id: the body says" in other_job.json()["error"]["message"]
    assert no_token.status_code == 401
    assert hpc_lines(runs_api, this_month()) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"elapsed_seconds": -1}, "elapsed_seconds"),
        ({"alloc_cpus": "8"}, "alloc_cpus"),
        ({"state": "completed; DROP TABLE"}, "state"),
        ({"cluster": ""}, "cluster"),
        ({"slurm_job_id": "12;34"}, "slurm_job_id"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_reports_are_422_naming_the_field(
    runs_api: TestClient, keys, change: dict, field: str
) -> None:
    answer = post(runs_api, mint(keys["current"]), {**USAGE, **change})

    assert answer.status_code == 422, answer.text
    assert field in answer.json()["error"]["message"]


def test_not_json_is_400_and_too_large_is_413(runs_api: TestClient, keys) -> None:
    token = mint(keys["current"])
    assert post(runs_api, token, b"{not json").status_code == 400
    assert post(runs_api, token, b" " * (17 * 1024)).status_code == 413


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.dictionaries(
        st.sampled_from([*USAGE, "extra"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40)),
    )
)
def test_hostile_bodies_never_cause_a_server_error(runs_api: TestClient, keys, body: dict) -> None:
    answer = post(runs_api, mint(keys["current"]), body)

    assert answer.status_code in (200, 201, 400, 409, 422), answer.text


def test_late_usage_for_a_finalized_month_is_an_adjustment_of_the_next(
    runs_api: TestClient, keys, db: psycopg.Connection, rates_file: Path
) -> None:
    assert post(runs_api, mint(keys["current"])).status_code == 201
    period = this_month()
    frozen = invoices.finalize(
        db, load_rates(rates_file), "acme", period, now=datetime.now(UTC), force=True
    )
    late = {**USAGE, "slurm_job_id": "5000", "job_id": JOB_ID + 9, "elapsed_seconds": 360}

    assert post(runs_api, mint(keys["current"], job_id=str(JOB_ID + 9)), late).status_code == 201

    billed = [line for line in frozen.document["lines"] if line["kind"] == "hpc"]
    assert [line["billable_seconds"] for line in billed] == [str(3725 * 8)]
    assert hpc_lines(runs_api, period) == billed, "a finalized invoice never changes"
    adjustment = hpc_lines(runs_api, next_period(period))
    assert len(adjustment) == 1
    assert adjustment[0]["for_period"] == period
    assert adjustment[0]["billable_seconds"] == str(360 * 8)
    assert Decimal(adjustment[0]["amount"]) == Decimal("0.72")
