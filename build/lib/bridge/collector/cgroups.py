"""A container's CPU time and memory, read from the kernel's cgroup files.

Docker's stats API costs about a second per call and misses a container's last second
(TESTING-NOTES.md); the cgroup files cost a read each. Where they are depends on the cgroup
version and Docker's cgroup driver (both reported by `GET /info`):

| version | CPU time | memory |
|---|---|---|
| v1 | `cpuacct/<group>/cpuacct.usage` (ns) | `memory/<group>/memory.usage_in_bytes` |
| v2 | `<group>/cpu.stat`, line `usage_usec` | `<group>/memory.current` |

with `<group>` = `docker/<id>` (cgroupfs driver), `system.slice/docker-<id>.scope` (systemd
driver), or below the container's own `--cgroup-parent`. The files disappear the moment the
container exits, so the last sample before that is the last word.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

NANOSECONDS = 1_000_000_000
MICROSECONDS = 1_000_000


@dataclass(frozen=True)
class Reading:
    cpu_seconds: float
    memory_bytes: int


@dataclass(frozen=True)
class Location:
    cpu: Path
    memory: Path


class CgroupReader:
    def __init__(self, root: Path = Path("/sys/fs/cgroup"), version: int | None = None) -> None:
        self.root = root
        # Without Docker's word, a unified hierarchy at the root means v2.
        self.version = version or (2 if (root / "cgroup.controllers").exists() else 1)

    def locate(self, container_id: str, cgroup_parent: str | None = None) -> Location | None:
        """The container's files, or None if none of the known layouts has them."""
        for group in _groups(container_id, cgroup_parent):
            location = self._files(group)
            if location.cpu.exists() and location.memory.exists():
                return location
        return None

    def read(self, location: Location) -> Reading | None:
        """Current totals, or None once the container is gone."""
        try:
            cpu_text = location.cpu.read_text()
            memory = int(location.memory.read_text())
            if self.version == 1:
                cpu = int(cpu_text) / NANOSECONDS
            else:
                usage = next(row for row in cpu_text.splitlines() if row.startswith("usage_usec"))
                cpu = int(usage.split()[1]) / MICROSECONDS
        except (OSError, ValueError, StopIteration):
            # Removed (or being removed) between listing and reading: the container is gone.
            return None
        return Reading(cpu_seconds=cpu, memory_bytes=memory)

    def _files(self, group: str) -> Location:
        if self.version == 1:
            return Location(
                cpu=self.root / "cpuacct" / group / "cpuacct.usage",
                memory=self.root / "memory" / group / "memory.usage_in_bytes",
            )
        return Location(
            cpu=self.root / group / "cpu.stat", memory=self.root / group / "memory.current"
        )


def _groups(container_id: str, parent: str | None) -> list[str]:
    groups = []
    if parent:
        parent = parent.strip("/")
        if parent.endswith(".slice"):
            groups.append(f"{_slice_path(parent)}/docker-{container_id}.scope")
        groups.append(f"{parent}/{container_id}")
    groups += [f"docker/{container_id}", f"system.slice/docker-{container_id}.scope"]
    return groups


def _slice_path(name: str) -> str:
    """systemd nests `a-b-c.slice` as `a.slice/a-b.slice/a-b-c.slice`."""
    parts = name.removesuffix(".slice").split("-")
    return "/".join("-".join(parts[: i + 1]) + ".slice" for i in range(len(parts)))
