"""Reconciliation: fill what the webhooks missed from GitLab's Jobs API.

GitLab delivers webhooks at most once (gitlab-contracts.md 1.5), so the ledger needs a
second source. A sweep lists every project and, per project:
- the jobs above the project's watermark minus a re-list window, newest first, page by page
  (the window catches jobs whose ids were taken before the last listing but that GitLab
  committed only after it: their ids are below a watermark that has moved past them);
- the project's open jobs: below the watermark, but not finished when a sweep last saw them
  (`created`, `manual`, `skipped`... all can still run: GitLab resets a skipped job when
  its pipeline is retried, and runs it under the same id).
Each finished job the ledger does not know as finished yet is applied through
`record_deliveries` like webhook deliveries (source "reconcile", the REST Job stored as the
body), so the ledger cannot tell the sources apart and a job reported by both is counted
once. Then, in one transaction, the watermark moves up to the highest job listed and the
unfinished jobs become the project's open jobs: the watermark only ever advances over jobs
that are stored with their terminal status or remembered as open. A sweep that fails
half-way leaves the watermark where it was; the next one lists the same jobs again and
finds them already in the ledger.

Each sweep is recorded (started_at, finished_at, status): finalizing a period waits for a
sweep that started after the period ended and completed. A sweep that ends in any error is
recorded as failed; one left `running` by a process that died is marked failed by the next
sweep. One sweep runs at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, Protocol

import psycopg
from psycopg.types.json import Jsonb

from bridge.billing import Rates
from bridge.facts import is_terminal
from bridge.gitlab import rest
from bridge.gitlab.api import PER_PAGE, GitLabApi, GitLabError, GitLabUnavailable
from bridge.ledger import Delivery, Outcome, record_deliveries
from bridge.storage import queries
from bridge.storage.database import DatabaseUnavailable

log = logging.getLogger("bridge.reconcile")

SOURCE = "reconcile"
# Job ids below the watermark listed again by every sweep (see the module's docstring).
RELIST_IDS = 1000
# Only one sweep at a time (a periodic service and an operator's command may overlap).
_SWEEP_LOCK = 0x7265_636F_6E63  # "reconc"


class Interrupted(RuntimeError):
    """The sweep was asked to stop (SIGTERM) before it had covered every project."""


class Progress(Protocol):
    def projects(self, total: int) -> None: ...

    def batch(self, project: str, listed: int, recorded: int) -> None: ...

    def project_done(self, project: str) -> None: ...


class _Silent:
    def projects(self, total: int) -> None:
        pass

    def batch(self, project: str, listed: int, recorded: int) -> None:
        pass

    def project_done(self, project: str) -> None:
        pass


@dataclass
class SweepResult:
    sweep_id: int
    started_at: datetime
    projects: int = 0
    listed: int = 0
    recorded: int = 0
    open_jobs: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def completed(self) -> bool:
        return not self.failures


@dataclass
class _Sweeper:
    conn: psycopg.Connection
    api: GitLabApi
    rates: Rates
    instance: str
    sweep_id: int
    progress: Progress
    relist: int = RELIST_IDS

    def project(self, project: dict[str, Any], result: SweepResult) -> None:
        project_id, path = project["id"], project["path_with_namespace"]
        key = {"instance": self.instance, "project_id": project_id}
        row = self.conn.execute(queries.PROJECT_WATERMARK, key).fetchone()
        watermark = row[0] if row else 0
        previously_open = [r[0] for r in self.conn.execute(queries.OPEN_JOBS, key)]

        highest, still_open = watermark, {}
        floor = max(0, watermark - self.relist)
        for page in _pages(self.api.jobs_above(project_id, floor), PER_PAGE):
            highest = max(highest, max(job["id"] for job in page))
            recorded = self._apply(project, page, still_open)
            result.listed += len(page)
            result.recorded += recorded
            self.progress.batch(path, len(page), recorded)

        finished = self._terminal_in_ledger(previously_open)
        rechecked = []
        for build_id in previously_open:
            if build_id in finished or build_id > floor:  # listed again above
                continue
            job = self.api.job(project_id, build_id)
            if job is None:
                log.info("open job %s of %s no longer exists in GitLab", build_id, path)
            else:
                rechecked.append(job)
        if rechecked:
            recorded = self._apply(project, rechecked, still_open)
            result.recorded += recorded
            self.progress.batch(path, len(rechecked), recorded)

        with self.conn.transaction():
            self.conn.execute(queries.SET_WATERMARK, {**key, "watermark": highest})
            self.conn.execute(queries.CLEAR_OPEN_JOBS, key)
            opened = [{"build_id": b, "status": s} for b, s in sorted(still_open.items())]
            self.conn.execute(queries.ADD_OPEN_JOBS, {**key, "jobs": Jsonb(opened)})
        result.open_jobs += len(still_open)

    def _apply(
        self, project: dict[str, Any], jobs: list[dict[str, Any]], still_open: dict[int, str]
    ) -> int:
        """Record the finished jobs the ledger lacks, in one transaction; note the others."""
        known = self._terminal_in_ledger([job["id"] for job in jobs])
        deliveries = []
        for job in jobs:
            status = job["status"]
            if job["id"] in known:
                continue
            if not is_terminal(status):
                still_open[job["id"]] = status
                continue
            # GitLab is asked before the transaction opens: no row lock waits on its answer.
            runner = job.get("runner")
            tags = self.api.runner_tags(runner["id"]) if runner else None
            body = rest.envelope(project, tags, job)
            # The fact comes from the stored bytes, exactly as `bridge rebuild` will see it.
            fact = rest.parse_envelope(body).to_fact()
            delivery = Delivery(
                instance=self.instance,
                source=SOURCE,
                kind=rest.KIND,
                body=body,
                headers={"x-bridge-sweep": str(self.sweep_id)},
            )
            deliveries.append((delivery, fact))
        # Ascending build ids, the lock order of the webhook path: no deadlock between them.
        deliveries.sort(key=lambda pair: pair[1].build_id)
        with self.conn.transaction():
            outcomes = record_deliveries(
                self.conn, [(delivery, [fact]) for delivery, fact in deliveries], self.rates
            )
        return outcomes.count(Outcome.RECORDED)

    def _terminal_in_ledger(self, build_ids: list[int]) -> set[int]:
        if not build_ids:
            return set()
        rows = self.conn.execute(
            queries.TERMINAL_IN_LEDGER, {"instance": self.instance, "build_ids": build_ids}
        )
        return {row[0] for row in rows}


def sweep(
    conn: psycopg.Connection,
    api: GitLabApi,
    rates: Rates,
    instance: str,
    *,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    relist: int = RELIST_IDS,
) -> SweepResult:
    """One sweep over every project; `conn` must be in autocommit mode.

    Raises GitLabUnavailable when GitLab cannot be reached, and re-raises any other error
    (the sweep is recorded as failed in both cases); a project GitLab refuses is reported
    in `failures` and the others go on.
    """
    progress = progress or _Silent()
    if not conn.execute("SELECT pg_try_advisory_lock(%s)", (_SWEEP_LOCK,)).fetchone()[0]:
        log.info("another reconciliation sweep is running; waiting for it to finish")
        conn.execute("SELECT pg_advisory_lock(%s)", (_SWEEP_LOCK,))
    try:
        conn.execute(queries.ABANDON_SWEEPS)
        sweep_id, started_at = conn.execute(queries.START_SWEEP).fetchone()
        result = SweepResult(sweep_id, started_at)
        sweeper = _Sweeper(conn, api, rates, instance, sweep_id, progress, relist)
        try:
            projects = list(api.projects())
            progress.projects(len(projects))
            for project in projects:
                if stop is not None and stop.is_set():
                    done = f"{result.projects} of {len(projects)}"
                    raise Interrupted(f"sweep stopped after {done} projects")
                try:
                    sweeper.project(project, result)
                except GitLabUnavailable:
                    raise
                except GitLabError as exc:
                    result.failures.append(f"{project['path_with_namespace']}: {exc}")
                    log.error("project %s not reconciled: %s", project["path_with_namespace"], exc)
                result.projects += 1
                progress.project_done(project["path_with_namespace"])
        except BaseException as exc:
            _end_failed(conn, result, exc)
            raise
        _end(
            conn,
            result,
            "completed" if result.completed else "failed",
            "; ".join(result.failures) or None,
        )
        return result
    finally:
        # A lost connection has released the lock already.
        with suppress(psycopg.Error):
            conn.execute("SELECT pg_advisory_unlock(%s)", (_SWEEP_LOCK,))


def _end_failed(conn: psycopg.Connection, result: SweepResult, exc: BaseException) -> None:
    expected = isinstance(exc, GitLabError | Interrupted)
    if not expected:
        log.error("sweep %s failed on an unexpected error", result.sweep_id, exc_info=exc)
    error = str(exc) if expected else f"unexpected error: {exc!r}"
    try:
        _end(conn, result, "failed", error)
    except psycopg.Error as failure:
        # The database itself is the problem: the next sweep marks this one abandoned.
        log.error("sweep %s could not be marked failed: %s", result.sweep_id, failure)


def _end(conn: psycopg.Connection, result: SweepResult, status: str, error: str | None) -> None:
    conn.execute(
        queries.END_SWEEP,
        {
            "id": result.sweep_id,
            "status": status,
            "projects": result.projects,
            "listed": result.listed,
            "recorded": result.recorded,
            "error": error,
        },
    )


def run_every(
    seconds: float,
    sweep_once: Callable[[], SweepResult],
    stop: threading.Event,
) -> None:
    """Sweep every `seconds` until `stop` is set. A failed sweep (GitLab or Postgres down)
    is logged and the next one tries again: this is a service, it does not exit."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            result = sweep_once()
            log.info("%s", describe(result))
        except Interrupted:
            return
        except (GitLabError, DatabaseUnavailable) as exc:
            log.error("sweep failed: %s; next attempt in %g s", exc, seconds)
        except Exception:  # logged with its traceback; the service goes on
            log.exception("sweep failed on an unexpected error; next attempt in %g s", seconds)
        stop.wait(max(0.0, seconds - (time.monotonic() - started)))


def describe(result: SweepResult) -> str:
    state = "completed" if result.completed else f"failed ({len(result.failures)} projects)"
    return (
        f"sweep {result.sweep_id} {state}: {result.projects} projects, {result.listed} jobs "
        f"listed, {result.recorded} recorded, {result.open_jobs} still open"
    )


def _pages(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(items)
    while page := list(islice(iterator, size)):
        yield page
