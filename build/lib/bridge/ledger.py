"""The usage ledger: store each delivery raw, then apply its job facts, exactly once.

One code path for every source (webhooks, the reconciler, `bridge rebuild`). Guarantees:
- a delivery whose Idempotency-Key was seen is a duplicate and changes nothing;
- a job's identity is (GitLab instance, build id), enforced by the primary key of `jobs`,
  and concurrent facts about one job are serialised by its row lock;
- status only moves forward; the first terminal fact fixes the bill, and a later terminal
  fact that disagrees is kept as a conflict, never billed.

Storing and applying a delivery is a single SQL statement (see `queries.RECORD_DELIVERY`),
and the statements of a batch go to Postgres in one round trip: the webhook path
(`bridge.ingest`) then commits a whole batch of concurrent deliveries at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from bridge.billing import Rates, billable_seconds, period_of
from bridge.facts import JobFact, status_rank
from bridge.storage import queries

RATES_DIGEST_KEY = "rates_classification"
log = logging.getLogger("bridge.ledger")


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
    body: bytes  # exactly as received
    headers: dict[str, str]
    idempotency_key: str | None = None


def record_deliveries(
    conn: psycopg.Connection,
    deliveries: Sequence[tuple[Delivery, Iterable[JobFact]]],
    rates: Rates,
) -> list[Outcome]:
    """Store deliveries and apply their facts, in the caller's transaction if there is one.

    Storing and applying is one statement per delivery, so even in autocommit mode they
    commit together; the statements of all deliveries go to Postgres in one round trip.
    A conflict record is written after them: it only compares with a bill that can no longer
    change, and `rebuild` would recreate it from the stored delivery.
    """
    distinct = [_distinct(facts) for _, facts in deliveries]
    with conn.cursor() as cursor:
        cursor.executemany(
            queries.RECORD_DELIVERY,
            [
                {
                    "instance": delivery.instance,
                    "source": delivery.source,
                    "kind": delivery.kind,
                    "idempotency_key": delivery.idempotency_key,
                    "headers": Jsonb(delivery.headers),
                    "body": delivery.body,
                    "facts": Jsonb([fact_row(fact, rates) for fact in facts]),
                }
                for (delivery, _), facts in zip(deliveries, distinct, strict=True)
            ],
            returning=True,
        )
        rows = []
        for _ in deliveries:
            rows.append(cursor.fetchone())
            cursor.nextset()
    outcomes = []
    for (delivery, _), facts, row in zip(deliveries, distinct, rows, strict=True):
        if row is None:
            outcomes.append(Outcome.DUPLICATE)
            continue
        event_id, received_at, applied = row
        outcomes.append(
            _outcome(conn, delivery.instance, facts, set(applied), event_id, received_at)
        )
    return outcomes


def reapply(
    conn: psycopg.Connection,
    instance: str,
    facts: Iterable[JobFact],
    event_id: int,
    received_at: datetime,
    rates: Rates,
) -> Outcome:
    """Apply the facts of an already stored delivery again (used by `rebuild`)."""
    distinct = _distinct(facts)
    _, _, applied = conn.execute(
        queries.REAPPLY_EVENT,
        {
            "instance": instance,
            "event_id": event_id,
            "received_at": received_at,
            "facts": Jsonb([fact_row(fact, rates) for fact in distinct]),
        },
    ).fetchone()
    return _outcome(conn, instance, distinct, set(applied), event_id, received_at)


def _distinct(facts: Iterable[JobFact]) -> list[JobFact]:
    """At most one fact per job and delivery (Postgres cannot upsert a row twice in one
    statement): a terminal fact, else the most advanced one."""
    chosen: dict[int, JobFact] = {}
    for fact in facts:
        kept = chosen.get(fact.build_id)
        if kept is None or _ahead(fact, kept):
            chosen[fact.build_id] = fact
    return sorted(chosen.values(), key=lambda f: f.build_id)


def _ahead(fact: JobFact, than: JobFact) -> bool:
    if than.terminal:
        return False
    return fact.terminal or status_rank(fact.status) > status_rank(than.status)


def _outcome(
    conn: psycopg.Connection,
    instance: str,
    facts: list[JobFact],
    applied: set[int],
    event_id: int,
    received_at: datetime,
) -> Outcome:
    outcomes = set()
    for fact in facts:
        if fact.build_id in applied:
            outcomes.add(Outcome.RECORDED)
        elif fact.terminal:
            outcomes.add(_check_conflict(conn, instance, fact, event_id, received_at))
        else:
            outcomes.add(Outcome.DUPLICATE)
    for strongest in (Outcome.RECORDED, Outcome.CONFLICT):
        if strongest in outcomes:
            return strongest
    return Outcome.DUPLICATE


def _check_conflict(
    conn: psycopg.Connection,
    instance: str,
    fact: JobFact,
    event_id: int,
    received_at: datetime,
) -> Outcome:
    """A terminal fact about a job whose bill is already fixed: the same fact, or a conflict."""
    key = {"instance": instance, "build_id": fact.build_id}
    recorded = _signature(*conn.execute(queries.BILLED_FACT, key).fetchone())
    seconds = billable_seconds(fact.duration, fact.started_at, fact.finished_at)
    incoming = _signature(fact.status, seconds, fact.runner.id if fact.runner else None)
    if recorded == incoming:
        return Outcome.DUPLICATE
    inserted = conn.execute(
        queries.INSERT_CONFLICT,
        {
            **key,
            "event_id": event_id,
            "recorded": Jsonb(recorded),
            "incoming": Jsonb(incoming),
            "fingerprint": hashlib.sha256(
                json.dumps(incoming, sort_keys=True).encode()
            ).hexdigest(),
            # When the disagreeing fact arrived, so a rebuild reproduces it exactly.
            "detected_at": received_at,
        },
    ).fetchone()
    return Outcome.CONFLICT if inserted else Outcome.DUPLICATE


def fact_row(fact: JobFact, rates: Rates) -> dict[str, Any]:
    """The `jobs` columns one fact implies (billing columns only for a terminal fact), as JSON."""
    runner = fact.runner
    terminal = fact.terminal
    billable = terminal and runner is not None
    moment = fact.finished_at or fact.started_at or fact.created_at
    seconds = billable_seconds(fact.duration, fact.started_at, fact.finished_at)
    return {
        "build_id": fact.build_id,
        "status": fact.status,
        "status_rank": status_rank(fact.status),
        "terminal": terminal,
        "project_id": fact.project_id,
        "project_path": fact.project_path,
        "client": rates.client_of(fact.project_path),
        "pipeline_id": fact.pipeline_id,
        "name": fact.name,
        "stage": fact.stage,
        "ref": fact.ref,
        "sha": fact.sha,
        "created_at": _iso(fact.created_at),
        "started_at": _iso(fact.started_at),
        "finished_at": _iso(fact.finished_at),
        "duration": None if fact.duration is None else str(fact.duration),
        "failure_reason": fact.failure_reason,
        "runner_id": runner.id if runner else None,
        "runner_description": runner.description if runner else None,
        "runner_type": runner.runner_type if runner else None,
        "runner_tags": list(runner.tags) if runner else [],
        "billable": billable,
        "billable_seconds": str(seconds) if terminal else None,
        "runner_class": rates.runner_class(runner.tags) if billable and runner else None,
        "period": period_of(moment) if terminal and moment else None,
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _fingerprint(signature: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(signature, sort_keys=True).encode()).hexdigest()


def _signature(status: str, seconds: Decimal | None, runner_id: int | None) -> dict[str, Any]:
    """What a terminal fact bills: two facts that agree on this are the same fact."""
    normal = None if seconds is None else format(seconds.normalize(), "f")
    return {"status": status, "billable_seconds": normal, "runner_id": runner_id}


def rebuild(
    conn: psycopg.Connection,
    rates: Rates,
    facts_of: Callable[[str, str, bytes], list[JobFact]],
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
            for event_id, received_at, instance, source, kind, body in events:
                try:
                    facts = facts_of(source, kind, bytes(body))
                except ValueError as exc:
                    # Stored before today's checks refused such input (a NaN duration...):
                    # it was never billable, so it is left out rather than stopping here.
                    log.warning("raw event %s skipped, no longer valid: %s", event_id, exc)
                    continue
                reapply(conn, instance, facts, event_id, received_at, rates)
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
