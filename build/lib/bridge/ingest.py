"""Group commit for webhook deliveries.

Each delivery must be durable before it is acknowledged, and a durable commit costs one WAL
flush. Committing every delivery alone makes that flush the bottleneck: with N senders
waiting, Postgres flushes for only the few commits that happen to be ready together. So
writer threads take every delivery that is waiting, apply them all in one transaction and
commit once; each sender's answer still waits for the commit that contains its delivery.

What keeps this from ever stalling ingest:
- a batch that fails for any reason other than an outage is retried one delivery per
  transaction, so a delivery the database (or a bug) refuses fails alone;
- a writer never dies: whatever escapes a commit is logged and handed to the waiting
  senders as their answer, and the writer takes the next batch;
- a sender waits at most `timeout` seconds (the caller answers 503 after that);
- `stalled()` tells `/readyz` when deliveries wait and none has completed for a while, or
  a writer is gone, so an orchestrator or an operator notices.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from contextlib import suppress
from dataclasses import dataclass, field

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
        self,
        db: Database,
        rates: Rates,
        *,
        writers: int = 2,
        max_batch: int = 64,
        stall_after: float = 10.0,
    ) -> None:
        self._db = db
        self._rates = rates
        self._writers = writers
        self._max_batch = max_batch
        self._stall_after = stall_after
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._waiting = 0  # submitted, not answered yet
        self._progress_at = time.monotonic()  # last answer, or first submit after idle

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
        with self._lock:
            if self._waiting == 0:
                self._progress_at = time.monotonic()
            self._waiting += 1
        pending.answer.add_done_callback(self._answered)
        self._queue.put(pending)
        return pending.answer

    def stalled(self) -> str | None:
        """Why ingest cannot make progress now, or None when it can."""
        dead = [t.name for t in self._threads if not t.is_alive()]
        if dead:
            return f"ingest writer {', '.join(dead)} stopped"
        with self._lock:
            idle = time.monotonic() - self._progress_at
            if self._waiting and idle > self._stall_after:
                return f"{self._waiting} deliveries waiting, none committed for {idle:.0f} s"
        return None

    def _answered(self, _future: Future[Outcome]) -> None:
        with self._lock:
            self._waiting -= 1
            self._progress_at = time.monotonic()

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
            try:
                self._commit(batch)  # type: ignore[arg-type]
            except Exception as exc:  # a writer must outlive any one batch
                log.exception("ingest writer: unexpected error on a batch of %d", len(batch))
                for pending in batch:
                    _fail(pending, exc)  # type: ignore[arg-type]
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
                _fail(pending, exc)
            return
        except Exception as exc:  # confined to this batch, see the docstring
            if len(batch) == 1:
                log.exception("delivery %s not recorded", _describe(batch[0]))
                _fail(batch[0], exc)
                return
            log.info("batch of %d failed (%s); retrying one by one", len(batch), exc)
            for pending in batch:
                self._commit([pending])
            return
        for pending, outcome in zip(batch, outcomes, strict=True):
            with suppress(InvalidStateError):  # its sender gave up waiting already
                pending.answer.set_result(outcome)


def _fail(pending: _Pending, exc: BaseException) -> None:
    with suppress(InvalidStateError):
        pending.answer.set_exception(exc)


def _describe(pending: _Pending) -> str:
    key = pending.delivery.idempotency_key
    return f"{pending.delivery.kind} (Idempotency-Key {key})" if key else pending.delivery.kind
