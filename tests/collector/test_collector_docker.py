"""`bridge collect` against the real Docker daemon and a real `bridge serve` that goes away."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from bridge.cli import main
from bridge.collector.containers import JOB_LABEL, PROJECT_LABEL
from local.ports import free_port
from tests.fixtures.bridge import BridgeProcess, start_bridge
from tests.fixtures.docker import DockerDaemon

TOKEN = "collector-token-of-runner-1-0123456789"
BURN = 4  # seconds of CPU the job burns, then it idles as long and exits


def wait_for(condition: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


@pytest.fixture
def runner_1(bridge_env: dict[str, str]) -> None:
    added = CliRunner().invoke(
        main, ["collectors", "add", "runner-1", "--token-stdin"], input=TOKEN, env=bridge_env
    )
    assert added.exit_code == 0, added.output


@pytest.fixture
def collector(
    docker_daemon: DockerDaemon, tmp_path: Path, runner_1: None
) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(bridge_url: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "BRIDGE_PUBLIC_URL": bridge_url,
            "BRIDGE_COLLECTOR_TOKEN": TOKEN,
            "BRIDGE_COLLECTOR_SPOOL_DIR": str(tmp_path / "spool"),
            "BRIDGE_COLLECTOR_INTERVAL": "0.5",
            "DOCKER_HOST": docker_daemon.host,
        }
        with (tmp_path / "collector.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "bridge", "collect"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def measured(db: psycopg.Connection, job: int) -> tuple[Decimal, Decimal] | None:
    return db.execute(
        "SELECT sum(cpu_seconds), sum(memory_gib_seconds) FROM usage_measurements "
        "WHERE build_id = %s HAVING count(*) > 0",
        (job,),
    ).fetchone()


def unsent(spool: Path) -> list[str]:
    return json.loads(spool.read_text())["unsent"] if spool.exists() else []


def test_cpu_time_within_15_percent_and_an_outage_loses_and_doubles_nothing(
    docker_daemon: DockerDaemon,
    bridge_env: dict[str, str],
    db: psycopg.Connection,
    collector: Callable[[str], subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # A fixed port, so that the bridge comes back where the collector posts.
    bridges = [start_bridge(bridge_env, tmp_path / "bridge.log", port)]
    try:
        run_the_job(docker_daemon, bridge_env, db, collector(url), bridges, tmp_path, url)
    finally:
        for bridge in bridges:
            bridge.process.kill()
            bridge.process.wait()


def run_the_job(
    docker_daemon: DockerDaemon,
    bridge_env: dict[str, str],
    db: psycopg.Connection,
    process: subprocess.Popen[bytes],
    bridges: list[BridgeProcess],
    tmp_path: Path,
    url: str,
) -> None:
    port = int(url.rsplit(":", 1)[1])
    labels = {JOB_LABEL: "4242", PROJECT_LABEL: "101", "com.gitlab.gitlab-runner.type": "build"}
    job = docker_daemon.client.containers.run(
        docker_daemon.image,
        ["sh", "-c", f'time -p timeout {BURN} sh -c "while :; do :; done"; sleep {BURN}'],
        labels=labels,
        network_mode="none",
        detach=True,
    )
    idle = docker_daemon.client.containers.run(
        docker_daemon.image,
        ["sleep", str(2 * BURN)],
        network_mode="none",
        detach=True,
        labels={**labels, JOB_LABEL: "4243"},
    )
    try:
        # Samples arrive while the bridge is up; then it dies mid-job, for the rest of it.
        wait_for(lambda: (m := measured(db, 4242)) and m[0] > Decimal("0.3"), 15, "samples")
        bridges[0].process.send_signal(signal.SIGKILL)
        bridges[0].process.wait()
        assert job.wait(timeout=30)["StatusCode"] == 0
        wait_for(lambda: unsent(tmp_path / "spool" / "spool.json"), 5, "spooled totals")
        stale = measured(db, 4242)
        assert stale is not None
        assert stale[0] < Decimal(BURN) / 2

        bridges.append(start_bridge(bridge_env, tmp_path / "bridge.log", port))
        idle.wait(timeout=30)
        wait_for(lambda: not unsent(tmp_path / "spool" / "spool.json"), 15, "delivery")
    finally:
        own_time = job.logs().decode()
        job.remove(force=True)
        idle.remove(force=True)

    times = dict(re.findall(r"^(user|sys) ([\d.]+)$", own_time, re.MULTILINE))
    own_cpu = Decimal(times["user"]) + Decimal(times["sys"])
    assert own_cpu > 1, own_time  # it did burn (how much depends on the machine's load)
    cpu, memory = measured(db, 4242)
    assert abs(cpu - own_cpu) <= Decimal("0.15") * own_cpu, (cpu, own_cpu)
    assert memory > 0
    idle_cpu, _ = measured(db, 4243)
    assert idle_cpu < Decimal("0.5"), "each job is measured on its own"
    # SIGTERM: the collector tries a last delivery and exits cleanly.
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    log = (tmp_path / "collector.log").read_text()
    assert "bridge unreachable" in log
    assert "spooled totals delivered" in log

    # Resending anything, however often and in whatever order, changes nothing.
    rows = db.execute(
        "SELECT build_id, project_id, container_id, started_at, observed_at, "
        "cpu_seconds, memory_gib_seconds, gpu_seconds FROM usage_measurements "
        "ORDER BY build_id"
    ).fetchall()
    again = [
        {
            "job_id": r[0],
            "project_id": r[1],
            "container_id": r[2],
            "started_at": r[3].isoformat(),
            "observed_at": r[4].isoformat(),
            "cpu_seconds": str(r[5]),
            "memory_gib_seconds": str(r[6]),
            "gpu_seconds": str(r[7]),
        }
        for r in rows
    ]
    older = [
        {**s, "cpu_seconds": str(Decimal(s["cpu_seconds"]) / 2), "memory_gib_seconds": "0"}
        for s in again
    ]
    response = httpx.post(
        f"{url}/api/v1/usage-samples",
        json={"samples": again + older},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.json() == {"accepted": 4, "changed": 0}
    assert measured(db, 4242) == (cpu, memory)
