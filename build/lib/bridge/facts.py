"""`JobFact`: one observation of a GitLab job, whatever reported it (webhook or API).

Every source is normalised to this shape before it reaches the ledger, so the ledger has a
single code path and cannot tell a webhook from a reconciled job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from bridge.billing import BILLABLE_TERMINAL_STATUSES

# Progress of a job, used to keep transitions monotonic under out-of-order delivery.
# Statuses not listed (new ones GitLab may add) rank as "queued".
_RANK = {
    "created": 0,
    "waiting_for_resource": 1,
    "preparing": 1,
    "pending": 1,
    "scheduled": 1,
    "manual": 1,
    "skipped": 1,
    "running": 2,
    "canceling": 2,
    "success": 3,
    "failed": 3,
    "canceled": 3,
}
QUEUED_RANK = 1


def status_rank(status: str) -> int:
    return _RANK.get(status, QUEUED_RANK)


def is_terminal(status: str) -> bool:
    return status in BILLABLE_TERMINAL_STATUSES


@dataclass(frozen=True)
class Runner:
    id: int
    description: str | None
    runner_type: str | None
    tags: tuple[str, ...]


@dataclass(frozen=True)
class JobFact:
    build_id: int
    status: str
    project_path: str
    project_id: int | None = None
    pipeline_id: int | None = None
    name: str | None = None
    stage: str | None = None
    ref: str | None = None
    sha: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration: Decimal | None = None
    runner: Runner | None = None
    failure_reason: str | None = None

    @property
    def terminal(self) -> bool:
        return is_terminal(self.status)
