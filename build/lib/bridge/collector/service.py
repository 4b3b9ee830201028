"""The collector's loop: sample the job containers, post the totals, keep what is unsent."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import docker
import requests

from bridge.collector.cgroups import CgroupReader, Location
from bridge.collector.containers import DockerSource
from bridge.collector.spool import Spool, Tracked
from bridge.collector.upload import Uploader
from bridge.settings import ConfigError, Settings

log = logging.getLogger("bridge.collector")

_DOCKER_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


class Collector:
    def __init__(
        self,
        source: DockerSource,
        spool: Spool,
        uploader: Uploader,
        *,
        cgroup_root: Path = Path("/sys/fs/cgroup"),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.source = source
        self.spool = spool
        self.uploader = uploader
        self._cgroup_root = cgroup_root
        self._clock = clock
        self._reader: CgroupReader | None = None
        # Where each container's cgroup files are (None: not found yet, looked again).
        self._locations: dict[str, Location | None] = {}
        self._docker_problem: str | None = None
        self._bridge_problem: str | None = None

    def cycle(self) -> None:
        """One round: sample every job container, then deliver what is unsent."""
        self._sample()
        self.flush()

    def flush(self) -> None:
        """Post every unsent total; what the bridge does not take stays in the spool."""
        spool = self.spool
        if spool.unsent:
            pending = sorted(spool.unsent)
            done, problem = self.uploader.send([spool.tracked[c].sample() for c in pending])
            spool.delivered(done)
            if problem and problem != self._bridge_problem:
                log.warning(
                    "%s: %d containers' totals kept in %s", problem, len(spool.unsent), spool.path
                )
            elif self._bridge_problem and not problem:
                log.info("bridge reachable again: spooled totals delivered")
            self._bridge_problem = problem
        spool.save()

    def _sample(self) -> None:
        now = self._clock()
        try:
            reader = self._reader or CgroupReader(self._cgroup_root, self.source.cgroup_version())
            self._reader = reader
            running = self.source.running_job_containers()
        except _DOCKER_ERRORS as exc:
            problem = f"Docker API unavailable ({type(exc).__name__}: {exc})"
            if problem != self._docker_problem:
                log.warning("%s; sampling paused", problem)
            self._docker_problem = problem
            return
        if self._docker_problem:
            log.info("Docker API available again")
            self._docker_problem = None

        for container_id, (job_id, project_id) in running.items():
            tracked = self.spool.tracked.get(container_id) or self._track(
                container_id, job_id, project_id
            )
            if tracked is None:
                continue
            location = self._location(reader, tracked)
            reading = reader.read(location) if location else None
            if reading is not None:
                tracked.add(now, reading.cpu_seconds, reading.memory_bytes)
                self.spool.unsent.add(container_id)

        for container_id, tracked in list(self.spool.tracked.items()):
            if container_id not in running and not tracked.gone:
                tracked.gone = True
                self._locations.pop(container_id, None)
                log.info(
                    "job %s: container %s ended (%.1f CPU-s, %.1f GiB-s, %.0f GPU-s)",
                    tracked.job_id,
                    container_id[:12],
                    tracked.cpu_seconds,
                    tracked.memory_gib_seconds,
                    tracked.gpu_seconds,
                )
                if container_id not in self.spool.unsent:
                    del self.spool.tracked[container_id]

    def _track(self, container_id: str, job_id: int, project_id: int) -> Tracked | None:
        described = self.source.describe(container_id, job_id, project_id)
        if described is None:
            return None
        tracked = Tracked(
            container_id=container_id,
            job_id=job_id,
            project_id=project_id,
            started_at=described.started_at.timestamp(),
            gpus=described.gpus,
            cgroup_parent=described.cgroup_parent,
        )
        self.spool.tracked[container_id] = tracked
        log.info(
            "job %s: container %s started (%d GPUs)", job_id, container_id[:12], described.gpus
        )
        return tracked

    def _location(self, reader: CgroupReader, tracked: Tracked) -> Location | None:
        container_id = tracked.container_id
        if self._locations.get(container_id) is None:
            location = reader.locate(container_id, tracked.cgroup_parent)
            if location is None and container_id not in self._locations:
                log.warning(
                    "container %s: no cgroup files under %s (cgroup v%d); not measured",
                    container_id[:12],
                    reader.root,
                    reader.version,
                )
            self._locations[container_id] = location
        return self._locations[container_id]


def run(settings: Settings, stop: threading.Event) -> None:
    """`bridge collect`: sample until `stop` is set, then try once more to deliver."""
    settings.require("public_url", "collector_token")
    interval = settings.collector_interval_seconds
    directory = Path(settings.collector_spool_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        spool = Spool(directory)
        spool.load()
        spool.save()
    except OSError as exc:
        raise ConfigError(
            f"BRIDGE_COLLECTOR_SPOOL_DIR {directory} is not usable: {exc.strerror}"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        # Never start afresh silently: the file may hold totals the bridge has not received.
        raise ConfigError(
            f"{directory / 'spool.json'} is not a spool this collector can read ({exc}); "
            "move it away to start without it"
        ) from None
    uploader = Uploader(str(settings.public_url), str(settings.collector_token))
    collector = Collector(DockerSource(), spool, uploader)
    log.info("collecting every %g s, posting to %s, spool %s", interval, uploader.url, spool.path)
    try:
        while not stop.is_set():
            started = time.monotonic()
            collector.cycle()
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
        collector.flush()
    finally:
        uploader.close()
