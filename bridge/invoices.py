"""Usage and invoices of one client for one month, computed from the ledger.

An open period's document is computed on demand with today's prices; a finalized one is
the stored document, never recomputed. Jobs that arrive late for a finalized period are
billed as adjustment lines in the next open period (and frozen with it once it is
finalized), so no job is ever billed twice or lost. Measured usage (CPU, memory, GPU) adds
its own lines beside the duration lines (see `bridge.usage`).

A period is finalized only once a reconciliation sweep that started after its end has
completed: webhooks may have been lost, and only such a sweep has listed every job of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import IsolationLevel
from psycopg.errors import UniqueViolation
from psycopg.types.json import Json, Jsonb

from bridge import usage as measured
from bridge.billing import Rates, invoice_line, line_amount, next_period
from bridge.hpc import usage as hpc
from bridge.storage import queries


class UnknownClient(LookupError):
    pass


class FinalizeRefused(RuntimeError):
    """Finalizing would freeze an incomplete invoice; the message says why and how to force."""


@dataclass(frozen=True)
class Finalized:
    document: dict[str, Any]
    already: bool


def period_end(period: str) -> datetime:
    return datetime.strptime(next_period(period), "%Y-%m").replace(tzinfo=UTC)


def adjustment_sources(period: str, finalized: list[str]) -> list[str]:
    """Finalized periods whose late usage is booked in `period` (their next open period)."""
    closed = set(finalized)
    sources = []
    for source in sorted(closed):
        if source >= period:
            break
        following = next_period(source)
        while following in closed:
            following = next_period(following)
        if following == period:
            sources.append(source)
    return sources


def client_known(conn: psycopg.Connection, client: str) -> bool:
    return bool(conn.execute(queries.CLIENT_KNOWN, {"client": client}).fetchone()[0])


def document(conn: psycopg.Connection, rates: Rates, client: str, period: str) -> dict[str, Any]:
    """The invoice of (client, period): the stored one if finalized, else computed now."""
    stored = conn.execute(queries.GET_INVOICE, {"client": client, "period": period}).fetchone()
    if stored is not None:
        return stored[0]
    if not client_known(conn, client):
        raise UnknownClient(client)
    return _compute(conn, rates, client, period, _billed_periods(conn, client, period))


def _billed_periods(conn: psycopg.Connection, client: str, period: str) -> list[str]:
    """`period` itself, then the finalized periods whose late jobs it bills."""
    finalized = [r[0] for r in conn.execute(queries.FINALIZED_PERIODS, {"client": client})]
    return [period, *adjustment_sources(period, finalized)]


def _compute(
    conn: psycopg.Connection, rates: Rates, client: str, period: str, periods: list[str]
) -> dict[str, Any]:
    usage: dict[tuple[str, str], tuple[int, Decimal]] = {}
    for row_period, runner_class, jobs, seconds in conn.execute(
        queries.USAGE_BY_CLASS, {"client": client, "periods": periods}
    ):
        usage[(row_period, runner_class)] = (jobs, seconds)

    lines = []
    # Lines in rates-file order: this period's usage first, then adjustments oldest first.
    for row_period in periods[:1] + sorted(periods[1:]):
        for runner_class in rates.classes:
            if (row_period, runner_class.name) not in usage:
                continue
            jobs, seconds = usage.pop((row_period, runner_class.name))
            lines.append(
                invoice_line(
                    "duration" if row_period == period else "adjustment",
                    runner_class.name,
                    jobs,
                    seconds,
                    line_amount(seconds, runner_class.per_minute),
                    for_period=row_period if row_period != period else None,
                )
            )
    lines.extend(_unpriced_lines(usage, period))
    lines.extend(measured.resource_lines(conn, rates, client, period, periods))
    lines.extend(hpc.lines(conn, rates, client, period, periods))

    conflicts = [
        {
            "build_id": build_id,
            "recorded": recorded,
            "incoming": incoming,
            "detected_at": detected_at.isoformat(),
        }
        for build_id, recorded, incoming, detected_at in conn.execute(
            queries.USAGE_CONFLICTS, {"client": client, "periods": periods}
        )
    ]
    return {
        "client": client,
        "period": period,
        "currency": rates.currency,
        "lines": lines,
        "total": _text(sum((Decimal(line["amount"]) for line in lines), Decimal("0.00"))),
        "finalized": False,
        "conflicts": conflicts,
    }


def _unpriced_lines(
    left: dict[tuple[str, str], tuple[int, Decimal]], period: str
) -> list[dict[str, Any]]:
    # Jobs classified under a class that the rates file no longer has (rates changed without
    # `bridge rebuild`): shown, priced at zero, so they are noticed rather than dropped.
    return [
        invoice_line(
            "unpriced",
            runner_class,
            jobs,
            seconds,
            (Decimal(0), Decimal("0.00")),
            for_period=row_period if row_period != period else None,
        )
        for (row_period, runner_class), (jobs, seconds) in sorted(left.items())
    ]


def finalize(
    conn: psycopg.Connection,
    rates: Rates,
    client: str,
    period: str,
    *,
    now: datetime,
    force: bool = False,
) -> Finalized:
    """Freeze the invoice of (client, period); finalizing twice returns the frozen one.

    `conn` must be in autocommit mode: this function runs its own transactions.
    """
    if not force and now < period_end(period):
        raise FinalizeRefused(
            f"period {period} has not ended yet (it ends {period_end(period).isoformat()}); "
            "use --force to finalize it anyway"
        )
    if not force:
        _require_sweep_since(conn, period)
    # One snapshot for the lines and for the list of jobs they bill: a job committed while we
    # finalize is either in both or in neither (then it becomes an adjustment).
    conn.isolation_level = IsolationLevel.REPEATABLE_READ
    try:
        with conn.transaction():
            existing = conn.execute(
                queries.GET_INVOICE, {"client": client, "period": period}
            ).fetchone()
            if existing is not None:
                return Finalized(existing[0], already=True)
            if not client_known(conn, client):
                raise UnknownClient(client)
            periods = _billed_periods(conn, client, period)
            frozen = _compute(conn, rates, client, period, periods)
            frozen["finalized"] = True
            frozen["finalized_at"] = now.isoformat()
            conn.execute(
                queries.INSERT_INVOICE,
                {
                    "client": client,
                    "period": period,
                    "document": Json(frozen),
                    "rates": Jsonb(rates.model_dump(mode="json")),
                },
            )
            conn.execute(
                queries.FREEZE_INVOICE_JOBS,
                {"client": client, "period": period, "periods": periods},
            )
            measured.freeze(conn, client, period, periods)
            hpc.freeze(conn, client, period, periods)
            return Finalized(frozen, already=False)
    except UniqueViolation:
        # Someone finalized the same invoice at the same moment: theirs is the invoice.
        row = conn.execute(queries.GET_INVOICE, {"client": client, "period": period}).fetchone()
        return Finalized(row[0], already=True)
    finally:
        conn.isolation_level = None


def _require_sweep_since(conn: psycopg.Connection, period: str) -> None:
    end = period_end(period)
    if conn.execute(queries.COMPLETED_SWEEP_SINCE, {"since": end}).fetchone() is not None:
        return
    last = conn.execute(queries.LAST_COMPLETED_SWEEP).fetchone()
    seen = f"the last one started {last[0].isoformat()}" if last else "none ever completed"
    raise FinalizeRefused(
        f"no reconciliation sweep has completed since period {period} ended "
        f"({end.isoformat()}; {seen}), so jobs whose webhooks were lost may be missing: "
        "run `bridge reconcile` and finalize again, or use --force"
    )


def _text(value: Decimal) -> str:
    """Decimal as a plain string, never in exponent notation."""
    return format(value, "f")
