"""`make demo-dev` as a user runs it: `python -m local.demo_dev up` (its state in a temp dir),
then what it prints is followed: a test user signs in to the hub with the printed password
through the stand-in's login form, her container starts, the printed `platform ssh-config` and
`ssh` commands reach it; `down` then leaves no process, port, container or volume behind.

One `up` for the whole module: it starts every service of local mode (MLflow included), the
costly part. The dev image is the one the other hub tests build (the `dev_hub_image` fixture).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local.demo_dev import DemoDev
from local.hub import REPO
from tests.fixtures.dev_hub import Hub

ALICE_UID = 200000 + 1001  # alice's GitLab id in local/demo_dev.py's cast


@dataclass
class Demo:
    state_dir: Path
    output: str
    env: dict[str, str]

    def run(self, command: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "local.demo_dev", command, "--state-dir", str(self.state_dir)],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def commands(self) -> list[str]:
        """The shell commands `up` printed, in order (lines starting with `$ `)."""
        return [line.strip()[2:] for line in self.output.splitlines() if line.strip()[:2] == "$ "]

    def password(self, user: str) -> str:
        match = re.search(rf"^  {user}\s+(\S+)\s", self.output, re.M)
        assert match, self.output
        return match.group(1)


@pytest.fixture(scope="module")
def demo(docker_daemon: Any, dev_hub_image: str) -> Iterator[Demo]:
    # Not under pytest's 0700 temp dir: Postgres runs as `postgres` and must reach its folder.
    base = Path(tempfile.mkdtemp(prefix="demo-dev-test-"))
    base.chmod(0o755)
    state_dir = base / "state"
    env = {**os.environ, "DOCKER_HOST": docker_daemon.host}
    demo = Demo(state_dir, "", env)
    try:
        # Generous: the first MLflow start alone may take minutes on a loaded machine.
        up = demo.run("up", timeout=1800)
        assert up.returncode == 0, f"{up.stderr}\n{up.stdout[-3000:]}"
        demo.output = up.stdout
        yield demo
    finally:
        if state_dir.exists():
            demo.run("down")
        shutil.rmtree(base, ignore_errors=True)


def _sessions(state_dir: Path) -> set[int]:
    """Session ids of every daemon `up` started (each runs in its own session; the hub's holds
    its proxy and culler) and of the Postgres server (postmaster.pid)."""
    return {int(f.read_text().split()[0]) for f in state_dir.rglob("*.pid")}


def _processes_in(sessions: set[int]) -> list[str]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z":
            continue  # exited, its parent not having reaped it yet: nothing runs
        if int(fields[3]) in sessions or int(stat.parent.name) in sessions:
            found.append(f"{stat.parent.name}: {(stat.parent / 'cmdline').read_bytes()[:120]!r}")
    return found


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_without_a_docker_daemon_up_says_how_to_start_one(tmp_path: Path) -> None:
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    demo = Demo(tmp_path / "state", "", env)
    done = demo.run("up", timeout=120)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"demo-dev: no Docker daemon answers at {env['DOCKER_HOST']}")
    assert "dockerd --bridge=none --iptables=false" in done.stderr
    assert not demo.state_dir.exists()  # nothing was started


@pytest.fixture
def hub(demo: Demo) -> Iterator[Hub]:
    """A browserless client of the demo's hub (the hub tests' helpers)."""
    local = DemoDev(demo.state_dir)
    hub = Hub(local.hub(), local.standin(), demo.state_dir / "hub")
    yield hub
    for client in hub.clients:
        client.close()


def test_a_test_user_signs_in_spawns_and_sshes_as_printed_then_down_cleans_up(
    demo: Demo, hub: Hub, docker_daemon: Any
) -> None:
    assert f"JupyterHub:        {hub.url}" in demo.output

    # Sign in as the output says: the hub's GitLab button, the stand-in's form, the password.
    browser = hub.client()
    form = browser.get(f"{hub.url}/hub/oauth_login", follow_redirects=True)
    assert "/interaction/" in form.url.path, form.url
    signed_in = browser.post(
        f"{form.url}/login",
        data={"username": "alice", "password": demo.password("alice")},
        follow_redirects=True,
    )
    assert signed_in.status_code == 200, signed_in.text[:500]
    # Signing in starts her container; a token made with the session follows its start.
    token = hub.session_token(browser, "alice")
    hub.wait_ready("alice", token)

    # The printed SSH steps: the ssh-config command, then ssh (with a command appended).
    export, ssh_config, ssh = demo.commands()
    assert export == "export JUPYTERHUB_API_TOKEN=<that token>"
    env = {**demo.env, "JUPYTERHUB_API_TOKEN": token}
    for command in (ssh_config, f"{ssh} id -u"):
        done = subprocess.run(
            ["bash", "-c", command],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (command, done.stderr)
    assert done.stdout.strip() == str(ALICE_UID)
    # The token in the printed config reaches alice's server only: it cannot stop it.
    config = (demo.state_dir / "ssh" / "alice.config").read_text()
    narrow = config.split("token ", 1)[1].split("'", 1)[0]
    assert narrow != token
    assert hub.api(narrow).delete("/users/alice/server").status_code == 403

    # `down` leaves nothing: processes, ports, containers, home volumes, the state dir.
    client = docker_daemon.client
    prefix = hub.container_prefix
    assert [c.name for c in client.containers.list(filters={"name": prefix})] == [f"{prefix}alice"]
    assert [v.name for v in client.volumes.list(filters={"name": prefix})] == [
        f"{prefix}home-alice"
    ]
    sessions = _sessions(demo.state_dir)
    assert len(sessions) >= 5, sessions  # stand-in, moto, MLflow, hub, Postgres
    ports = json.loads((demo.state_dir / "state.json").read_text())["ports"]
    down = demo.run("down")
    assert down.returncode == 0, down.stderr
    assert not client.containers.list(all=True, filters={"name": prefix})
    assert not client.volumes.list(filters={"name": prefix})
    assert _processes_in(sessions) == []
    assert [name for name, port in ports.items() if _listening(port)] == []
    assert not demo.state_dir.exists()
