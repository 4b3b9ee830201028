"""The collector's memory: each job container's running totals, and which are unsent.

Totals are cumulative per container since it started, so the spool never holds a queue of
samples: only each container's latest totals, and a mark on those the bridge has not
acknowledged yet. Resending the latest totals covers every sample that could not be sent
before. The file is rewritten atomically (write, fsync, rename) after every change, so a
restarted collector goes on integrating memory and GPU time where it stopped and still
delivers what it measured before an outage.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GIB = 2**30
VERSION = 1


@dataclass
class Tracked:
    """One job container and its totals so far."""

    container_id: str
    job_id: int
    project_id: int
    started_at: float  # Unix time, from Docker
    gpus: int
    cgroup_parent: str | None = None
    cpu_seconds: float = 0.0
    memory_gib_seconds: float = 0.0
    memory_bytes: int = 0  # at the last sample, for integrating to the next
    sampled_at: float = 0.0  # Unix time of the last sample; 0 before the first
    gone: bool = False  # exited: its last totals only wait to be delivered

    def add(self, now: float, cpu_seconds: float, memory_bytes: int) -> None:
        """Take a reading: CPU is a counter; memory is integrated over time (trapezoids);
        before the first reading the container is taken to have used what it uses now."""
        if self.sampled_at:
            span, average = now - self.sampled_at, (self.memory_bytes + memory_bytes) / 2
        else:
            span, average = now - self.started_at, memory_bytes
        self.memory_gib_seconds += max(span, 0.0) * average / GIB
        # The counter only shrinks if the container's cgroup was recreated: keep the total.
        self.cpu_seconds = max(self.cpu_seconds, cpu_seconds)
        self.memory_bytes = memory_bytes
        self.sampled_at = now

    @property
    def gpu_seconds(self) -> float:
        return self.gpus * max(self.sampled_at - self.started_at, 0.0)

    def sample(self) -> dict[str, Any]:
        """The totals as `POST /api/v1/usage-samples` takes them (decimal strings)."""
        return {
            "job_id": self.job_id,
            "project_id": self.project_id,
            "container_id": self.container_id,
            "started_at": _iso(self.started_at),
            "observed_at": _iso(self.sampled_at),
            "cpu_seconds": f"{self.cpu_seconds:.6f}",
            "memory_gib_seconds": f"{self.memory_gib_seconds:.6f}",
            "gpu_seconds": f"{self.gpu_seconds:.3f}",
        }


class Spool:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "spool.json"
        self.tracked: dict[str, Tracked] = {}
        self.unsent: set[str] = set()

    def load(self) -> None:
        if not self.path.exists():
            return
        document = json.loads(self.path.read_text())
        self.tracked = {t["container_id"]: Tracked(**t) for t in document["containers"]}
        self.unsent = set(document["unsent"]) & set(self.tracked)

    def save(self) -> None:
        document = {
            "version": VERSION,
            "containers": [asdict(t) for t in self.tracked.values()],
            "unsent": sorted(self.unsent),
        }
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("w") as out:
            json.dump(document, out)
            out.flush()
            os.fsync(out.fileno())
        temporary.replace(self.path)

    def delivered(self, container_ids: list[str]) -> None:
        """The bridge has these totals: unmark them and forget containers that are gone."""
        for container_id in container_ids:
            self.unsent.discard(container_id)
            if self.tracked[container_id].gone:
                del self.tracked[container_id]


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat()
