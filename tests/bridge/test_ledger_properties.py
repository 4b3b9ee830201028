"""Property: any delivery order, with any duplicates, bills exactly like the naive reference."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import invoices
from bridge.billing import Rates
from bridge.gitlab.webhooks import parse_event
from bridge.ledger import Delivery, fact_row, record_deliveries
from bridge.storage import queries
from local.postgres import LocalPostgres
from tests.bridge import reference
from tests.bridge.payloads import (
    CPU_RUNNER,
    GPU_RUNNER,
    LARGE_RUNNER,
    job_event,
    lifecycle,
    pipeline_build,
    pipeline_event,
)
from tests.fixtures.bridge import GITLAB_URL, RATES_YAML
from tests.fixtures.postgres import create_database

PROJECTS = ["acme-vision/seg", "acme-nlp/bert", "beta-lab/study", "gamma/survey"]
RUNNERS = [GPU_RUNNER, CPU_RUNNER, LARGE_RUNNER]


@pytest.fixture(scope="module")
def ledger(postgres: LocalPostgres, ledger_template: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(create_database(postgres, ledger_template), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def rates() -> Rates:
    import yaml

    return Rates.model_validate(yaml.safe_load(RATES_YAML))


@st.composite
def job_deliveries(draw: st.DrawFn, build_id: int) -> list[tuple[str | None, dict[str, Any]]]:
    """Every delivery one job causes, each with a fresh Idempotency-Key or none (old GitLab)."""
    project = draw(st.sampled_from(PROJECTS))
    # Spans a year boundary; whole seconds, since GitLab's timestamps have no fractions.
    finished = draw(
        st.datetimes(datetime(2025, 11, 20), datetime(2026, 2, 10), timezones=st.just(UTC))
    ).replace(microsecond=0)
    common = {"project": project, "pipeline_id": build_id * 10, "style": draw(
        st.sampled_from(["iso", "millis", "legacy"]))}  # fmt: skip
    if draw(st.booleans()) and draw(st.booleans()):
        # Canceled before any runner picked it up: never billed.
        events = [
            job_event(build_id, "pending", **common),
            job_event(build_id, "canceled", finished=finished, **common),
        ]
    else:
        runner = draw(st.sampled_from(RUNNERS))
        started = finished - timedelta(seconds=draw(st.integers(0, 4 * 3600)))
        duration = draw(st.one_of(st.none(), st.floats(0, 14400).map(lambda s: round(s, 3))))
        status = draw(st.sampled_from(["success", "failed", "canceled"]))
        events = lifecycle(
            build_id,
            runner=runner,
            started=started,
            finished=finished,
            duration=duration,
            status=status,
            **common,
        )
        if draw(st.booleans()):
            # A later terminal fact that disagrees (another duration or status).
            other = draw(st.floats(0, 14400).map(lambda s: round(s, 3)))
            events.append(
                job_event(
                    build_id, "failed", runner=runner, started=started, finished=finished,
                    duration=other, **common,
                )
            )  # fmt: skip
        if draw(st.booleans()):
            # The pipeline event repeats the job's final state in builds[].
            build = pipeline_build(
                build_id, status, runner=runner, started=started, finished=finished,
                duration=duration,
            )  # fmt: skip
            events.append(pipeline_event(build_id * 10, [build], project=project))
    keyed = draw(st.booleans())
    return [
        (f"key-{build_id}-{index}" if keyed else None, payload)
        for index, payload in enumerate(events)
    ]


@st.composite
def delivery_streams(draw: st.DrawFn) -> list[tuple[str | None, dict[str, Any]]]:
    jobs = draw(st.integers(1, 6))
    deliveries = [d for i in range(jobs) for d in draw(job_deliveries(1000 + i))]
    repeats = draw(st.lists(st.sampled_from(range(len(deliveries))), max_size=12))
    deliveries += [deliveries[i] for i in repeats]
    return draw(st.permutations(deliveries))


def deliver(conn: psycopg.Connection, rates: Rates, key: str | None, payload: dict) -> None:
    parsed = parse_event(payload)
    delivery = Delivery(GITLAB_URL, "webhook", parsed.kind, json.dumps(payload).encode(), {}, key)
    record_deliveries(conn, [(delivery, parsed.facts)], rates)


def billed(conn: psycopg.Connection, rates: Rates) -> dict[tuple[str, str], Any]:
    result = {}
    pairs = conn.execute("SELECT DISTINCT client, period FROM jobs WHERE billable").fetchall()
    for client, period in pairs:
        document = invoices.document(conn, rates, client, period)
        result[(client, period)] = {
            line["runner_class"]: (
                line["jobs"],
                Decimal(line["billable_seconds"]),
                Decimal(line["amount"]),
            )
            for line in document["lines"]
        }
    return result


@settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=delivery_streams())
def test_any_order_with_duplicates_bills_like_the_reference(
    ledger: psycopg.Connection, rates: Rates, stream: list
) -> None:
    ledger.execute("TRUNCATE raw_events, jobs, conflicts, invoice_jobs, invoices CASCADE")
    for key, payload in stream:
        deliver(ledger, rates, key, payload)
    assert billed(ledger, rates) == reference.invoices(stream)


def test_a_fact_row_has_exactly_the_fields_the_statement_reads() -> None:
    """`fact_row` and the record definition of `jsonb_to_recordset` share one field list; a
    field added to one and not the other would be silently dropped or always null."""
    rates = Rates.model_validate(yaml.safe_load(RATES_YAML))
    fact = parse_event(job_event(1, "success", runner=CPU_RUNNER, duration=3.0)).facts[0]
    assert list(fact_row(fact, rates)) == [name for name, _ in queries.FACT_FIELDS]
