"""The usage ledger: store each delivery raw, then apply its job facts, exactly once.

One code path for every source (webhooks, the reconciler, `bridge rebuild`). Guarantees:
- a delivery whose Idempotency-Key was seen is a duplicate and changes nothing;
- a job's identity is (GitLab instance, build id), enforced by the primary key of `jobs`,
  and concurrent facts about one job are serialised by its row lock;
- status only moves forward; the first terminal fact fixes the bill, and a later terminal
  fact that disagrees is kept as a conflict, never billed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bridge.billing import BILLABLE_TERMINAL_STATUSES, Rates, billable_seconds, period_of
from bridge.facts import JobFact, status_rank
from bridge.storage import queries

RATES_DIGEST_KEY = "rates_classification"


class Outcome(StrEnum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    IGNORED = "ignored"


@dataclass(frozen=True)
class Delivery:
    """One message as received: what `raw_events` keeps and `rebuild` replays."""

    instance: str
    source: str
    kind: str
    payload: dict[str, Any]
    headers: dict[str, str]
    idempotency_key: str | None = None


def record_delivery(
    conn: psycopg.Connection, delivery: Delivery, facts: Iterable[JobFact], rates: Rates
) -> Outcome:
    """Store the delivery and apply its facts, inside the caller's transaction."""
    stored = conn.execute(
        queries.INSERT_RAW_EVENT,
        {
            "instance": delivery.instance,
            "source": delivery.source,
            "kind": delivery.kind,
            "idempotency_key": delivery.idempotency_key,
            "headers": Jsonb(delivery.headers),
            "payload": Jsonb(delivery.payload),
        },
    ).fetchone()
    if stored is None:
        return Outcome.DUPLICATE
    event_id, received_at = stored
    return apply_facts(conn, delivery.instance, facts, event_id, received_at, rates)


def apply_facts(
    conn: psycopg.Connection,
    instance: str,
    facts: Iterable[JobFact],
    event_id: int,
    received_at: datetime,
    rates: Rates,
) -> Outcome:
    # Always lock jobs in build-id order, so two pipeline events cannot deadlock.
    outcomes = [
        _apply(conn, instance, fact, event_id, received_at, rates)
        for fact in sorted(facts, key=lambda f: f.build_id)
    ]
    for strongest in (Outcome.RECORDED, Outcome.CONFLICT):
        if strongest in outcomes:
            return strongest
    return Outcome.DUPLICATE


def _apply(
    conn: psycopg.Connection,
    instance: str,
    fact: JobFact,
    event_id: int,
    received_at: datetime,
    rates: Rates,
) -> Outcome:
    row = job_row(instance, fact, event_id, received_at, rates)
    if conn.execute(queries.INSERT_JOB, row).fetchone() is not None:
        return Outcome.RECORDED
    status, terminal, seconds, runner_id = conn.execute(queries.LOCK_JOB, row).fetchone()
    if terminal:
        if not fact.terminal:
            return Outcome.DUPLICATE
        recorded = _signature(status, seconds, runner_id)
        incoming = _signature(row["status"], row["billable_seconds"], row["runner_id"])
        if recorded == incoming:
            return Outcome.DUPLICATE
        fingerprint = hashlib.sha256(json.dumps(incoming, sort_keys=True).encode()).hexdigest()
        inserted = conn.execute(
            queries.INSERT_CONFLICT,
            {
                "instance": instance,
                "build_id": fact.build_id,
                "event_id": event_id,
                "recorded": Jsonb(recorded),
                "incoming": Jsonb(incoming),
                "fingerprint": fingerprint,
                # When the disagreeing fact arrived, so a rebuild reproduces it exactly.
                "detected_at": received_at,
            },
        ).fetchone()
        return Outcome.CONFLICT if inserted else Outcome.DUPLICATE
    if fact.terminal or status_rank(fact.status) > status_rank(status):
        conn.execute(queries.ADVANCE_JOB, row)
        return Outcome.RECORDED
    return Outcome.DUPLICATE


def job_row(
    instance: str, fact: JobFact, event_id: int, received_at: datetime, rates: Rates
) -> dict[str, Any]:
    """The `jobs` columns one fact implies (billing columns only for a terminal fact)."""
    runner = fact.runner
    terminal = fact.terminal
    billable = terminal and fact.status in BILLABLE_TERMINAL_STATUSES and runner is not None
    seconds = billable_seconds(fact.duration, fact.started_at, fact.finished_at)
    # GitLab always sends finished_at on a terminal event; the fallbacks keep a malformed
    # but authentic event billable in a deterministic month (received_at is stored).
    moment = fact.finished_at or fact.started_at or fact.created_at or received_at
    return {
        "instance": instance,
        "build_id": fact.build_id,
        "project_id": fact.project_id,
        "project_path": fact.project_path,
        "client": rates.client_of(fact.project_path),
        "pipeline_id": fact.pipeline_id,
        "name": fact.name,
        "stage": fact.stage,
        "ref": fact.ref,
        "sha": fact.sha,
        "status": fact.status,
        "created_at": fact.created_at,
        "started_at": fact.started_at,
        "finished_at": fact.finished_at,
        "duration": fact.duration,
        "failure_reason": fact.failure_reason,
        "runner_id": runner.id if runner else None,
        "runner_description": runner.description if runner else None,
        "runner_type": runner.runner_type if runner else None,
        "runner_tags": list(runner.tags) if runner else [],
        "terminal_event_id": event_id if terminal else None,
        "billable": billable,
        "billable_seconds": seconds if terminal else None,
        "runner_class": rates.runner_class(runner.tags) if billable and runner else None,
        "period": period_of(moment) if terminal else None,
    }


def _signature(status: str, seconds: Decimal | None, runner_id: int | None) -> dict[str, Any]:
    """What a terminal fact bills: two facts that agree on this are the same fact."""
    normal = None if seconds is None else format(seconds.normalize(), "f")
    return {"status": status, "billable_seconds": normal, "runner_id": runner_id}


def rebuild(
    conn: psycopg.Connection,
    rates: Rates,
    facts_of: Callable[[str, str, dict[str, Any]], list[JobFact]],
    progress: Callable[[int], None] = lambda _done: None,
) -> int:
    """Recompute jobs and conflicts from every stored delivery, in arrival order.

    Runs in one transaction that blocks new deliveries, so the ledger is never seen half
    rebuilt. Finalized invoices and their job lists are left as issued.
    """
    replayed = 0
    with conn.transaction():
        conn.execute("LOCK TABLE raw_events IN SHARE MODE")
        conn.execute(queries.TRUNCATE_LEDGER)
        with conn.cursor(name="replay") as events:
            events.itersize = 2000
            events.execute(queries.REPLAY_RAW_EVENTS)
            for event_id, received_at, instance, source, kind, payload in events:
                facts = facts_of(source, kind, payload)
                apply_facts(conn, instance, facts, event_id, received_at, rates)
                replayed += 1
                if replayed % 2000 == 0:
                    progress(replayed)
        remember_rates(conn, rates)
    progress(replayed)
    return replayed


def remember_rates(conn: psycopg.Connection, rates: Rates) -> None:
    conn.execute(
        queries.SET_STATE, {"key": RATES_DIGEST_KEY, "value": rates.classification_digest()}
    )


def rates_changed_since_build(conn: psycopg.Connection, rates: Rates) -> bool:
    """True when the ledger was classified with other classes or client mapping."""
    row = conn.execute(queries.GET_STATE, {"key": RATES_DIGEST_KEY}).fetchone()
    if row is None:
        remember_rates(conn, rates)
        return False
    return row[0] != rates.classification_digest()
