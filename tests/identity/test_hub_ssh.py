"""One dev container per user, reached through Jupyter and over SSH through the hub.

Real JupyterHub + configurable-http-proxy + DevSpawner on the real Docker daemon, the dev image's
entrypoint and sshd, jupyter-server-proxy's raw socket proxy, websocat, ssh and sftp.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.dev_hub import Hub, HubFactory, ssh_keypair
from tests.identity.hub_ssh import SshClient, ssh_config, ssh_environment

ALICE_ID = 11  # TEST_USERS of the stand-in
UID_BASE = 200000


@dataclass
class Alice:
    hub: Hub
    token: str
    ssh: SshClient
    key: Path
    folder: Path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    folder = tmp_path_factory.mktemp("keys")
    return {user: ssh_keypair(folder, user) for user in ("alice", "bob")}


@pytest.fixture(scope="module")
def hub(start_hub: HubFactory, keys: dict[str, tuple[Path, str]]) -> Hub:
    return start_hub(ssh_keys={user: [public] for user, (_, public) in keys.items()})


@pytest.fixture(scope="module")
def alice(hub: Hub, keys: dict[str, tuple[Path, str]]) -> Alice:
    token = hub.api_token("alice")
    hub.spawn("alice", token)
    key = keys["alice"][0]
    client = ssh_config(hub, "alice", token, key, key.parent / "known_hosts-alice")
    return Alice(hub, token, client, key, key.parent)


def _put_text(alice: Alice, path: str, text: str) -> None:
    response = alice.hub.client().put(
        f"{alice.hub.url}/user/alice/api/contents/{path}",
        json={"type": "file", "format": "text", "content": text},
        headers={"Authorization": f"token {alice.token}"},
    )
    assert response.status_code in (200, 201), response.text


def test_a_file_written_through_jupyter_is_read_over_ssh(alice: Alice) -> None:
    _put_text(alice, "hello.txt", "written through Jupyter\n")
    done = alice.ssh.run("cat hello.txt; id -u; id -g")
    assert done.returncode == 0, done.stderr
    text, uid, gid = done.stdout.rsplit("\n", 3)[0:3]
    assert text == "written through Jupyter"
    assert int(uid) == int(gid) == UID_BASE + ALICE_ID


def test_the_file_on_the_host_belongs_to_the_users_uid(alice: Alice) -> None:
    _put_text(alice, "owned.txt", "mine\n")
    on_host = alice.hub.homes / "alice" / "owned.txt"
    assert on_host.read_text() == "mine\n"
    assert on_host.stat().st_uid == UID_BASE + ALICE_ID
    assert on_host.stat().st_gid == UID_BASE + ALICE_ID
    assert (alice.hub.homes / "alice").stat().st_uid == UID_BASE + ALICE_ID


def test_sftp_upload_is_seen_by_jupyter(alice: Alice) -> None:
    upload = alice.folder / "upload.csv"
    upload.write_text("a,b\n1,2\n")
    batch = alice.folder / "sftp-batch"
    batch.write_text(f"put {upload} data.csv\n")
    done = subprocess.run(
        ["sftp", "-F", str(alice.ssh.config), "-b", str(batch), alice.ssh.alias],
        capture_output=True,
        text=True,
        timeout=60,
        env=ssh_environment(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    response = alice.hub.client().get(
        f"{alice.hub.url}/user/alice/api/contents/data.csv",
        headers={"Authorization": f"token {alice.token}"},
    )
    assert response.json()["content"] == "a,b\n1,2\n"


def test_local_port_forwarding_works(alice: Alice) -> None:
    """`ssh -L` (what VS Code Remote-SSH uses): forward a local port to sshd inside."""
    sshd_port = alice.ssh.run("echo $SSH_CONNECTION").stdout.split()[3]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        local_port = probe.getsockname()[1]
    forward = subprocess.Popen(
        [
            "ssh",
            "-F",
            str(alice.ssh.config),
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-L",
            f"127.0.0.1:{local_port}:127.0.0.1:{sshd_port}",
            alice.ssh.alias,
        ],
        env=ssh_environment(),
        stderr=subprocess.DEVNULL,
    )
    try:
        banner = b""
        deadline = time.monotonic() + 30
        while not banner and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", local_port), timeout=5) as conn:
                    banner = conn.recv(64)
            except OSError:
                time.sleep(0.3)
        assert banner.startswith(b"SSH-2.0-OpenSSH"), banner
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_password_authentication_is_refused(alice: Alice) -> None:
    done = alice.ssh.run(
        "true",
        options=(
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
        ),
    )
    assert done.returncode == 255
    # sshd offers nothing but public keys.
    assert "Permission denied (publickey)" in done.stderr


def test_another_users_token_gets_403_over_http(alice: Alice) -> None:
    bob = alice.hub.api_token("bob")
    for path in ("api/contents/hello.txt", "lab", "sshd/"):
        response = alice.hub.client().get(
            f"{alice.hub.url}/user/alice/{path}",
            headers={"Authorization": f"token {bob}"},
            follow_redirects=False,
        )
        assert response.status_code == 403, (path, response.status_code)


def test_another_user_gets_no_ssh_session(alice: Alice, keys: dict[str, tuple[Path, str]]) -> None:
    bob_token = alice.hub.api_token("bob")
    bob_key = keys["bob"][0]
    known_hosts = bob_key.parent / "known_hosts-bob"
    # Bob's own narrow token, aimed at Alice's server: the hub refuses the websocket.
    wrong_server = ssh_config(alice.hub, "bob", bob_token, bob_key, known_hosts, "alice")
    done = wrong_server.run("id")
    assert done.returncode == 255
    assert "Permission denied" not in done.stderr  # never reached sshd
    assert not known_hosts.exists() or known_hosts.read_text() == ""
    # Bob's key with Alice's token: sshd knows only Alice's keys.
    wrong_key = ssh_config(alice.hub, "alice", alice.token, bob_key, known_hosts)
    done = wrong_key.run("id")
    assert done.returncode == 255
    assert "Permission denied (publickey)" in done.stderr


def test_the_ssh_token_reaches_the_server_only(alice: Alice) -> None:
    narrow = alice.ssh.config.read_text().split("token ", 1)[1].split("'", 1)[0]
    api = alice.hub.api(narrow)
    # Every token may identify its owner (name, groups); the servers are not readable.
    model = api.get("/users/alice").json()
    assert model["name"] == "alice"
    assert "servers" not in model
    assert "last_activity" not in model
    assert api.delete("/users/alice/server").status_code == 403
    assert api.post("/users/alice/tokens", json={}).status_code == 403


def test_cpu_and_memory_are_limited_per_user(alice: Alice, docker_daemon: object) -> None:
    client = docker_daemon.client  # type: ignore[attr-defined]
    container = client.containers.get(f"{alice.hub.container_prefix}alice")
    host = container.attrs["HostConfig"]
    assert host["CpuQuota"] == host["CpuPeriod"] == 100_000  # HUB_CPU_LIMIT=1
    assert host["Memory"] == 1024**3  # HUB_MEM_LIMIT=1G
    assert host["NetworkMode"] == "host"  # loopback mode: server and sshd on 127.0.0.1 only
    listening = container.exec_run("cat /proc/net/tcp").output.decode()
    sshd_port = int(alice.ssh.run("echo $SSH_CONNECTION").stdout.split()[3])
    assert f"0100007F:{sshd_port:04X} 00000000:0000 0A" in listening
