"""The usage collector's own cost (issue: measured usage).

20 labelled job containers (idle, `--network none`) on the real Docker daemon; `bridge
collect` samples them every 5 s (its default) and posts their totals to a real
`bridge serve`. Measured: the collector's own CPU time over 30 s, as a share of one core.
Compared, in the same run, with Docker's stats API, which the collector avoids: one pass of
`GET /containers/{id}/stats?stream=false` over the same 20 containers, next to one whole
cycle of the collector (list, read cgroup files, post, save the spool).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bridge.auth import register_collector
from bridge.collector.containers import JOB_LABEL, PROJECT_LABEL, DockerSource
from bridge.collector.service import Collector
from bridge.collector.spool import Spool
from bridge.collector.upload import Uploader
from bridge.storage.migrate import migrate
from local.postgres import LocalPostgres
from tests.bench.bench_bridge_ledger import RATES
from tests.bench.table import Row
from tests.fixtures.bridge import start_bridge
from tests.fixtures.docker import DockerDaemon, running_docker
from tests.fixtures.postgres import new_cluster_dir

CONTAINERS = 20
INTERVAL = 5.0
WARMUP, WINDOW = 12.0, 30.0
TOKEN = "bench-collector-token-0123456789abcdef"
TARGET = 2.0  # percent of one core


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run() -> list[Row]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-collector-"))
    base = new_cluster_dir()
    postgres = LocalPostgres(base / "cluster")
    postgres.start()
    containers = []
    try:
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            migrate(conn)
            with conn.transaction():
                register_collector(conn, "bench-host", TOKEN)
        (workdir / "rates.yml").write_text(RATES)
        env = {
            "BRIDGE_DATABASE_URL": postgres.url(),
            "BRIDGE_WEBHOOK_TOKEN": "bench",
            "BRIDGE_ADMIN_TOKEN": "bench-admin",
            "BRIDGE_RATES_FILE": str(workdir / "rates.yml"),
            "BRIDGE_GITLAB_URL": "https://gitlab.example.com",
        }
        bridge = start_bridge(env, workdir / "bridge.log")
        with running_docker() as docker:
            for job in range(CONTAINERS):
                containers.append(
                    docker.client.containers.run(
                        docker.image,
                        ["sleep", "3600"],
                        network_mode="none",
                        detach=True,
                        labels={JOB_LABEL: str(5000 + job), PROJECT_LABEL: "101"},
                    )
                )
            try:
                share = _collector_share(bridge.url, docker.host, workdir)
                cycle = _one_cycle(bridge.url, docker, workdir)
                started = time.perf_counter()
                for container in containers:
                    container.stats(stream=False)
                stats_pass = time.perf_counter() - started
            finally:
                for container in containers:
                    container.remove(force=True)
        bridge.stop()
        with psycopg.connect(postgres.url()) as conn:
            measured = conn.execute("SELECT count(*) FROM usage_measurements").fetchone()[0]
    finally:
        postgres.destroy()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    if measured != CONTAINERS:
        raise RuntimeError(f"{measured} of {CONTAINERS} containers reached the bridge")
    return [
        Row(
            benchmark=f"usage collector, {CONTAINERS} job containers, every {INTERVAL:g} s",
            measured=f"{share:.2f}% of one core (collector process, {WINDOW:g} s)",
            baseline=f"stats API: {stats_pass:.1f} s for one pass over the same containers",
            comparison=f"collector cycle {cycle * 1000:.0f} ms, {stats_pass / cycle:,.0f}x faster",
            target=f"< {TARGET:g}% of one core",
            met=share < TARGET,
        )
    ]


def _collector_share(bridge_url: str, docker_host: str, workdir: Path) -> float:
    env = {
        **os.environ,
        "BRIDGE_PUBLIC_URL": bridge_url,
        "BRIDGE_COLLECTOR_TOKEN": TOKEN,
        "BRIDGE_COLLECTOR_SPOOL_DIR": str(workdir / "spool"),
        "BRIDGE_COLLECTOR_INTERVAL": str(INTERVAL),
        "DOCKER_HOST": docker_host,
    }
    with (workdir / "collector.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bridge", "collect"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        time.sleep(WARMUP)  # start-up and the first cycle (one inspect per container)
        before, started = cpu_seconds(process.pid), time.monotonic()
        time.sleep(WINDOW)
        used, elapsed = cpu_seconds(process.pid) - before, time.monotonic() - started
    finally:
        process.terminate()
        process.wait(30)
    return 100 * used / elapsed


def _one_cycle(bridge_url: str, docker: DockerDaemon, workdir: Path) -> float:
    """Wall time of one steady-state collector cycle, in this process."""
    spool_dir = workdir / "cycle-spool"
    spool_dir.mkdir()
    uploader = Uploader(bridge_url, TOKEN)
    collector = Collector(DockerSource(docker.client.api), Spool(spool_dir), uploader)
    try:
        collector.cycle()  # the first cycle inspects every container once
        started = time.perf_counter()
        collector.cycle()
        return time.perf_counter() - started
    finally:
        uploader.close()
