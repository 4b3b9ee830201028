"""Culling: the idle culler's maximum age is a hard ceiling (an open SSH session keeps a server
active for ever), culling removes the container, and the home and the container's SSH host key
survive the respawn (the same known_hosts entry still matches)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import docker
import pytest

from tests.fixtures.dev_hub import Hub, HubFactory, ssh_keypair
from tests.identity.hub_ssh import ssh_config, ssh_environment

# Long enough for the first SSH session to start on a loaded machine, short enough to wait for.
MAX_AGE = 60


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return ssh_keypair(tmp_path_factory.mktemp("keys"), "alice")


@pytest.fixture(scope="module")
def hub(start_hub: HubFactory, key: tuple[Path, str]) -> Hub:
    return start_hub(
        ssh_keys={"alice": [key[1]]},
        # Never idle long enough to be culled for idleness: only the maximum age applies.
        env={"HUB_CULL_IDLE": "3600", "HUB_CULL_MAX_AGE": str(MAX_AGE), "HUB_CULL_EVERY": "3"},
    )


def _containers(client: docker.DockerClient, hub: Hub) -> list[str]:
    return [
        c.name for c in client.containers.list(all=True, filters={"name": hub.container_prefix})
    ]


def test_max_age_culls_an_active_server_and_the_home_and_host_key_survive(
    hub: Hub, key: tuple[Path, str], docker_daemon: object
) -> None:
    client = docker_daemon.client  # type: ignore[attr-defined]
    token = hub.api_token("alice")
    hub.spawn("alice", token)
    known_hosts = key[0].parent / "known_hosts"
    ssh = ssh_config(hub, "alice", token, key[0], known_hosts)
    done = ssh.run("echo kept > kept.txt && cat /etc/hostname")
    assert done.returncode == 0, done.stderr
    first_key = known_hosts.read_text()
    assert "ssh-ed25519" in first_key
    assert _containers(client, hub) == [f"{hub.container_prefix}alice"]

    # An open SSH session: websocket traffic is activity, yet the maximum age still applies.
    session = subprocess.Popen(
        ["ssh", "-F", str(ssh.config), ssh.alias, "while true; do date; sleep 1; done"],
        env=ssh_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + MAX_AGE + 60
        while _containers(client, hub) and time.monotonic() < deadline:
            time.sleep(1)
        assert _containers(client, hub) == [], "the culler did not remove the container"
        assert session.poll() is None or session.returncode != 0
    finally:
        session.kill()
        session.wait()
    assert "culling server" in hub.log_text().lower() or "culled" in hub.log_text().lower()
    assert (hub.homes / "alice" / "kept.txt").read_text() == "kept\n"

    # Respawn: same home, same host key; StrictHostKeyChecking=yes refuses any other key.
    hub.spawn("alice", token)
    strict = ssh.config.read_text().replace(
        "StrictHostKeyChecking accept-new", "StrictHostKeyChecking yes"
    )
    ssh.config.write_text(strict)
    done = ssh.run("cat kept.txt")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "kept\n"
    assert known_hosts.read_text() == first_key
