"""GitLab job containers on this host, through the Docker API.

The runner labels every container of a job (build, services, helpers) with the job and
project ids (gitlab-contracts.md section 5). Only those two labels are trusted: the others
can be influenced by the job's variables. The collector needs only read-only calls, which
is all the proxy in front of the Docker socket lets through: `GET /info`,
`GET /containers/json` (once per cycle) and `GET /containers/{id}/json` (once per container).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import docker

log = logging.getLogger("bridge.collector")

JOB_LABEL = "com.gitlab.gitlab-runner.job.id"
PROJECT_LABEL = "com.gitlab.gitlab-runner.project.id"
_NVIDIA_DEVICE = re.compile(r"^/dev/nvidia\d+$")
_HOST_GPUS = Path("/proc/driver/nvidia/gpus")  # one entry per GPU; global, not namespaced


@dataclass(frozen=True)
class JobContainer:
    id: str
    job_id: int
    project_id: int
    started_at: datetime
    gpus: int
    cgroup_parent: str | None


class DockerSource:
    """A lazily connecting Docker client: the daemon may be down when the collector starts."""

    def __init__(self, client: docker.APIClient | None = None) -> None:
        self._client = client

    @property
    def api(self) -> docker.APIClient:
        if self._client is None:
            # `version="auto"` asks the daemon which API version it speaks (GET /version).
            self._client = docker.from_env(version="auto").api
        return self._client

    def cgroup_version(self) -> int | None:
        version = self.api.info().get("CgroupVersion")
        return int(version) if version in ("1", "2") else None

    def running_job_containers(self) -> dict[str, tuple[int, int]]:
        """{container id: (job id, project id)} of the running job containers."""
        found = {}
        for container in self.api.containers(filters={"label": JOB_LABEL, "status": "running"}):
            ids = _ids(container.get("Labels") or {})
            if ids is None:
                log.warning(
                    "container %s has a job label that is not an id; ignored", container["Id"][:12]
                )
                continue
            found[container["Id"]] = ids
        return found

    def describe(self, container_id: str, job_id: int, project_id: int) -> JobContainer | None:
        """What the collector needs once per container; None if it is already gone."""
        try:
            inspected = self.api.inspect_container(container_id)
        except docker.errors.NotFound:
            return None
        host = inspected.get("HostConfig") or {}
        return JobContainer(
            id=container_id,
            job_id=job_id,
            project_id=project_id,
            started_at=datetime.fromisoformat(inspected["State"]["StartedAt"]),
            gpus=gpu_count(host),
            cgroup_parent=host.get("CgroupParent") or None,
        )


def _ids(labels: dict[str, str]) -> tuple[int, int] | None:
    job, project = labels.get(JOB_LABEL, ""), labels.get(PROJECT_LABEL, "")
    if not (job.isdigit() and project.isdigit()):
        return None
    return int(job), int(project)


def gpu_count(host_config: dict[str, Any]) -> int:
    """GPUs allocated to a container: `--gpus` device requests, or NVIDIA devices mapped in."""
    count = 0
    for request in host_config.get("DeviceRequests") or []:
        capabilities = {c for group in request.get("Capabilities") or [] for c in group}
        if "gpu" not in capabilities and request.get("Driver") != "nvidia":
            continue
        if request.get("DeviceIDs"):
            count += len(request["DeviceIDs"])
        elif request.get("Count", 0) == -1:  # --gpus all
            count += _host_gpus()
        else:
            count += request.get("Count", 0)
    devices = host_config.get("Devices") or []
    count += sum(1 for d in devices if _NVIDIA_DEVICE.match(d.get("PathOnHost", "")))
    return count


def _host_gpus() -> int:
    try:
        return sum(1 for _ in _HOST_GPUS.iterdir())
    except OSError:
        log.warning("a container asks for all GPUs, but %s is not readable: counting 1", _HOST_GPUS)
        return 1
