"""Group commit for webhook deliveries.

Each delivery must be durable before it is acknowledged, and a durable commit costs one WAL
flush. Committing every delivery alone makes that flush the bottleneck: with N senders
waiting, Postgres flushes for only the few commits that happen to be ready together. So
writer threads take every delivery that is waiting, apply them all in one transaction and
commit once; each sender's answer still waits for the commit that contains its delivery.

A batch that fails as a whole for a reason other than an outage (a deadlock between the
writers, or one delivery the database refuses) is retried one delivery per transaction,
so one bad delivery never takes its neighbours down with it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import psycopg

from bridge.billing import Rates
from bridge.facts import JobFact
from bridge.ledger import Delivery, Outcome, record_deliveries
from bridge.storage.database import Database, DatabaseUnavailable

log = logging.getLogger("bridge.ingest")


@dataclass
class _Pending:
    delivery: Delivery
    facts: Sequence[JobFact]
    answer: Future[Outcome] = field(default_factory=Future)

    @property
    def first_job(self) -> int:
        return min((f.build_id for f in self.facts), default=0)


_STOP = object()


class IngestQueue:
    def __init__(
        self, db: Database, rates: Rates, *, writers: int = 2, max_batch: int = 64
    ) -> None:
        self._db = db
        self._rates = rates
        self._writers = writers
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for number in range(self._writers):
            thread = threading.Thread(target=self._run, name=f"ingest-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Apply everything already submitted, then stop the writers."""
        for _ in self._threads:
            self._queue.put(_STOP)
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def submit(self, delivery: Delivery, facts: Sequence[JobFact]) -> Future[Outcome]:
        pending = _Pending(delivery, facts)
        self._queue.put(pending)
        return pending.answer

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            stopping = False
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stopping = True
                    break
                batch.append(more)
            self._commit(batch)  # type: ignore[arg-type]
            if stopping:
                return

    def _commit(self, batch: list[_Pending]) -> None:
        # One lock order for all writers: fewer deadlocks between concurrent batches.
        batch.sort(key=lambda pending: pending.first_job)
        try:
            with self._db.connection() as conn, conn.transaction():
                outcomes = record_deliveries(
                    conn, [(p.delivery, p.facts) for p in batch], self._rates
                )
        except DatabaseUnavailable as exc:
            for pending in batch:
                pending.answer.set_exception(exc)
            return
        except psycopg.Error as exc:
            if len(batch) == 1:
                log.error("delivery %s refused by the database: %s", _describe(batch[0]), exc)
                batch[0].answer.set_exception(exc)
                return
            log.info("batch of %d failed (%s); retrying one by one", len(batch), exc)
            for pending in batch:
                self._commit([pending])
            return
        for pending, outcome in zip(batch, outcomes, strict=True):
            pending.answer.set_result(outcome)


def _describe(pending: _Pending) -> str:
    key = pending.delivery.idempotency_key
    return f"{pending.delivery.kind} (Idempotency-Key {key})" if key else pending.delivery.kind
