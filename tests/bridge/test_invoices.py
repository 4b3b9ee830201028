"""Invoices to the cent, period boundaries, finalizing, late usage and rebuilding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from bridge.cli import main
from tests.bridge.helpers import admin, post_event, usage
from tests.bridge.payloads import CPU_RUNNER, GPU_RUNNER, LARGE_RUNNER, job_event, lifecycle


@pytest.fixture(autouse=True)
def reconciled(db: psycopg.Connection) -> None:
    """A completed reconciliation sweep now, after every month these tests finalize."""
    db.execute("INSERT INTO reconcile_sweeps (finished_at, status) VALUES (now(), 'completed')")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def finished_job(
    api: TestClient,
    build_id: int,
    *,
    runner: dict | None,
    finished: str,
    seconds: float,
    project: str = "acme-vision/segmentation",
    status: str = "success",
) -> None:
    end = at(finished)
    for payload in lifecycle(
        build_id,
        runner=runner,
        started=end - timedelta(seconds=seconds),
        finished=end,
        duration=seconds,
        status=status,
        project=project,
    ):
        assert post_event(api, payload).status_code == 200


def test_hand_computed_month_to_the_cent(api: TestClient) -> None:
    finished_job(api, 1, runner=GPU_RUNNER, finished="2026-10-03T10:00:00", seconds=754.2)
    finished_job(api, 2, runner=GPU_RUNNER, finished="2026-10-04T10:00:00", seconds=1200,
                 project="acme-nlp/bert", status="failed")  # fmt: skip
    finished_job(api, 3, runner=CPU_RUNNER, finished="2026-10-05T10:00:00", seconds=3599.9)
    finished_job(api, 4, runner=LARGE_RUNNER, finished="2026-10-06T10:00:00", seconds=600,
                 status="canceled")  # fmt: skip
    # Canceled before any runner took it: not billable.
    post_event(api, job_event(5, "canceled", finished=at("2026-10-07T10:00:00")))
    finished_job(api, 6, runner=GPU_RUNNER, finished="2026-11-01T00:00:00", seconds=60)
    finished_job(api, 7, runner=CPU_RUNNER, finished="2026-10-08T10:00:00", seconds=61,
                 project="beta-lab/study")  # fmt: skip
    finished_job(api, 8, runner=GPU_RUNNER, finished="2026-10-31T23:59:59", seconds=300)

    october = usage(api, "acme", "2026-10")
    # gpu: 754.2 + 1200 + 300 = 2254.2 s = 37.57 min x 0.50 = 18.785 -> 18.79 (half-up)
    # standard: 3599.9 s x 0.02 / 60 = 1.19996... -> 1.20; large: 10 min x 0.05 = 0.50
    assert october == {
        "client": "acme",
        "period": "2026-10",
        "currency": "EUR",
        "lines": [
            {"kind": "duration", "runner_class": "gpu", "jobs": 3, "billable_seconds": "2254.2",
             "amount": "18.79", "exact_amount": "18.785"},
            {"kind": "duration", "runner_class": "large", "jobs": 1, "billable_seconds": "600",
             "amount": "0.50", "exact_amount": "0.5"},
            {"kind": "duration", "runner_class": "standard", "jobs": 1,
             "billable_seconds": "3599.9", "amount": "1.20",
             "exact_amount": "1.199966666666666666666666667"},
        ],
        "total": "20.49",
        "finalized": False,
        "conflicts": [],
    }  # fmt: skip
    assert usage(api, "acme", "2026-11")["total"] == "0.50"
    assert usage(api, "beta-lab", "2026-10")["lines"][0]["amount"] == "0.02"


def test_last_second_of_month_and_year(api: TestClient) -> None:
    finished_job(api, 21, runner=CPU_RUNNER, finished="2025-12-31T23:59:59", seconds=60)
    finished_job(api, 22, runner=CPU_RUNNER, finished="2026-01-01T00:00:00", seconds=120)
    finished_job(api, 23, runner=CPU_RUNNER, finished="2026-01-31T23:59:59", seconds=180)
    finished_job(api, 24, runner=CPU_RUNNER, finished="2026-02-01T00:00:00", seconds=240)
    seconds = {
        period: [line["billable_seconds"] for line in usage(api, "acme", period)["lines"]]
        for period in ("2025-12", "2026-01", "2026-02")
    }
    assert seconds == {"2025-12": ["60"], "2026-01": ["300"], "2026-02": ["240"]}


def cli(env: dict[str, str], *args: str) -> Any:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result


def test_finalized_invoice_never_changes_and_late_usage_is_an_adjustment(
    api: TestClient, bridge_env: dict[str, str]
) -> None:
    finished_job(api, 31, runner=GPU_RUNNER, finished="2026-08-10T10:00:00", seconds=600)
    finalize = cli(bridge_env, "invoice", "--client", "acme", "--period", "2026-08", "--finalize")
    assert finalize.exit_code == 0, finalize.output
    frozen = admin(api, "/api/v1/invoices/acme/2026-08").json()
    assert frozen["finalized"] is True
    assert frozen["total"] == "5.00"

    # A job of August reported late (webhook lost, found later) and a conflicting fact
    # about a billed job: August stays as issued.
    finished_job(api, 32, runner=CPU_RUNNER, finished="2026-08-20T10:00:00", seconds=300)
    post_event(api, job_event(31, "failed", runner=GPU_RUNNER, finished=at("2026-08-10T10:00:00"),
                              duration=9999.0))  # fmt: skip
    assert admin(api, "/api/v1/invoices/acme/2026-08").json() == frozen

    september = usage(api, "acme", "2026-09")
    assert september["lines"] == [
        {"kind": "adjustment", "runner_class": "standard", "jobs": 1, "billable_seconds": "300",
         "amount": "0.10", "exact_amount": "0.1", "for_period": "2026-08"}
    ]  # fmt: skip
    assert september["total"] == "0.10"

    # Finalizing September freezes the adjustment with it; the next late August job moves on.
    assert cli(bridge_env, "invoice", "--client", "acme", "--period", "2026-09",
               "--finalize").exit_code == 0  # fmt: skip
    finished_job(api, 33, runner=CPU_RUNNER, finished="2026-08-21T10:00:00", seconds=600)
    assert admin(api, "/api/v1/invoices/acme/2026-09").json()["total"] == "0.10"
    october = usage(api, "acme", "2026-10")
    assert [(line["kind"], line["for_period"], line["amount"]) for line in october["lines"]] == [
        ("adjustment", "2026-08", "0.20")
    ]


def test_finalizing_twice_returns_the_same_invoice(
    api: TestClient, bridge_env: dict[str, str]
) -> None:
    finished_job(api, 41, runner=GPU_RUNNER, finished="2026-07-10T10:00:00", seconds=60)
    first = cli(bridge_env, "invoice", "--client", "acme", "--period", "2026-07", "--finalize")
    again = cli(bridge_env, "invoice", "--client", "acme", "--period", "2026-07", "--finalize")
    assert first.exit_code == again.exit_code == 0
    assert "is now finalized" in first.stderr
    assert "was already finalized" in again.stderr
    assert first.stdout == again.stdout


def test_finalizing_an_unfinished_month_needs_force(
    api: TestClient, bridge_env: dict[str, str]
) -> None:
    finished_job(api, 42, runner=GPU_RUNNER, finished="2026-07-10T10:00:00", seconds=60)
    refused = cli(bridge_env, "invoice", "--client", "acme", "--period", "2999-01", "--finalize")
    assert refused.exit_code == 1
    assert "period 2999-01 has not ended yet" in refused.output
    assert "Traceback" not in refused.output
    forced = cli(bridge_env, "invoice", "--client", "acme", "--period", "2999-01", "--finalize",
                 "--force")  # fmt: skip
    assert forced.exit_code == 0, forced.output


def snapshot(db: psycopg.Connection, api: TestClient) -> dict[str, Any]:
    """Every invoice document and every job's billing state."""
    pairs = db.execute(
        "SELECT DISTINCT client, period FROM jobs WHERE period IS NOT NULL"
        " UNION SELECT client, period FROM invoices ORDER BY 1, 2"
    ).fetchall()
    periods = {p for _, p in pairs}
    # Adjustments land in periods that may have no own jobs: include the following months.
    pairs += [(c, f"2026-{m:02d}") for c in ("acme", "beta-lab") for m in range(1, 13)]
    jobs = db.execute(
        "SELECT build_id, status, billable, billable_seconds, runner_class, period, client"
        " FROM jobs ORDER BY build_id"
    ).fetchall()
    conflicts = db.execute(
        "SELECT build_id, recorded, incoming FROM conflicts ORDER BY build_id, id"
    ).fetchall()
    return {
        "periods": periods,
        "documents": {pair: admin(api, "/api/v1/invoices/{}/{}".format(*pair)).json()
                      for pair in pairs},
        "jobs": jobs,
        "conflicts": conflicts,
    }  # fmt: skip


def test_rebuild_yields_identical_invoices(
    api: TestClient, db: psycopg.Connection, bridge_env: dict[str, str]
) -> None:
    runners = [GPU_RUNNER, CPU_RUNNER, LARGE_RUNNER, None]
    for build_id in range(100, 160):
        finished_job(
            api,
            build_id,
            runner=runners[build_id % 4],
            finished=f"2026-0{7 + build_id % 3}-{1 + build_id % 28:02d}T10:00:00",
            seconds=build_id * 7.5,
            project=["acme-vision/a", "acme-nlp/b", "beta-lab/c"][build_id % 3],
            status=["success", "failed", "canceled"][build_id % 3],
        )
        if build_id % 10 == 0:  # some conflicting terminal facts
            late = job_event(build_id, "failed", runner=CPU_RUNNER, duration=1.0,
                             finished=at("2026-07-01T00:00:00"))  # fmt: skip
            post_event(api, late)
    assert cli(bridge_env, "invoice", "--client", "acme", "--period", "2026-07",
               "--finalize").exit_code == 0  # fmt: skip
    finished_job(api, 200, runner=GPU_RUNNER, finished="2026-07-15T10:00:00", seconds=90)
    before = snapshot(db, api)
    assert before["conflicts"], "the scenario must include conflicts"

    result = cli(bridge_env, "rebuild")
    assert result.exit_code == 0, result.output
    assert "ledger rebuilt from" in result.stdout
    assert snapshot(db, api) == before


@pytest.mark.parametrize("output", ["table", "json", "csv"])
def test_usage_cli_formats(api: TestClient, bridge_env: dict[str, str], output: str) -> None:
    finished_job(api, 51, runner=GPU_RUNNER, finished="2026-10-03T10:00:00", seconds=754.2)
    post_event(api, job_event(51, "failed", runner=GPU_RUNNER, finished=at("2026-10-03T10:00:00"),
                              duration=1.0))  # fmt: skip
    result = cli(bridge_env, "usage", "--client", "acme", "--period", "2026-10", "--format", output)
    assert result.exit_code == 0, result.output
    expected = {
        "table": ["gpu", "754.2", "6.29", "6.285", "Total: 6.29 EUR", "Conflicts (1)"],
        "json": ['"amount": "6.29"', '"exact_amount": "6.285"', '"conflicts": ['],
        "csv": ["client,period,kind,for_period,runner_class,jobs,billable_seconds,amount",
                "acme,2026-10,duration,,gpu,1,754.2,6.29,6.285,EUR",
                "acme,2026-10,total,,,,,6.29,,EUR"],
    }[output]  # fmt: skip
    for text in expected:
        assert text in result.stdout


def test_invoice_csv_over_http(api: TestClient) -> None:
    finished_job(api, 52, runner=CPU_RUNNER, finished="2026-10-03T10:00:00", seconds=600)
    response = admin(api, "/api/v1/invoices/acme/2026-10?format=csv")
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text.splitlines()[1] == "acme,2026-10,duration,,standard,1,600,0.20,0.2,EUR"
