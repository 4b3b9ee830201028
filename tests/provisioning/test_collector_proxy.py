"""The usage collector's read-only Docker API proxy, as rendered, run by the real nginx against the
real Docker daemon: reads pass, writes are refused, and it works with the user and group its
Compose service gives it (the Docker socket is root:docker 0660)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

from local.ports import free_port
from tests.fixtures.docker import DockerDaemon
from tests.fixtures.provisioning import Render


@contextmanager
def proxy(
    render: Render, socket: str, run_as: list[str], owner: tuple[int, int] = (0, 0)
) -> Iterator[str]:
    """The rendered docker-api-ro.conf of runner-01 served by nginx on a free loopback port.
    Only what differs between the container and this machine is replaced: the listen port
    (free, on loopback), the daemon's socket, and /tmp (a folder of this test)."""
    rendered = (render.host("runner-01") / "opt/platform/collector/docker-api-ro.conf").read_text()
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="docker-api-ro-"))
    try:
        os.chown(workdir, *owner)  # nginx writes its pid and temporary files here
        config = workdir / "docker-api-ro.conf"
        config.write_text(
            rendered.replace("listen 2375;", f"listen 127.0.0.1:{port};")
            .replace("unix:/var/run/docker.sock:", f"unix:{socket}:")
            .replace(" /tmp/", f" {workdir}/")
        )
        process = subprocess.Popen(
            [*run_as, "nginx", "-e", "stderr", "-c", str(config), "-g", "daemon off;"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                    break
                except httpx.TransportError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            process.stdout.read().decode() if process.stdout else ""
                        ) from None
                    time.sleep(0.1)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.communicate(timeout=20)
    finally:
        shutil.rmtree(workdir)


def compose_user(render: Render) -> tuple[int, str]:
    compose = yaml.safe_load(
        (render.host("runner-01") / "opt/platform/collector/compose.yml").read_text()
    )
    service = compose["services"]["docker-api-ro"]
    assert service["cap_drop"] == ["ALL"]
    uid, gid = service["user"].split(":")
    return int(uid), gid


def test_the_proxy_reads_the_docker_api_as_its_compose_user_and_refuses_writes(
    example_render: Render, docker_daemon: DockerDaemon
) -> None:
    socket = docker_daemon.host.removeprefix("unix://")
    uid, gid = compose_user(example_render)
    # A render cannot know the host's docker group: the deploy reads it from the socket.
    assert gid == "DOCKER_SOCKET_GID"
    socket_gid = os.stat(socket).st_gid
    as_compose_runs_it = ["setpriv", f"--reuid={uid}", f"--regid={socket_gid}", "--clear-groups"]
    with proxy(example_render, socket, as_compose_runs_it, owner=(uid, socket_gid)) as url:
        assert httpx.get(f"{url}/_ping").status_code == 200
        assert httpx.get(f"{url}/v1.41/containers/json").status_code == 200
        assert (
            httpx.post(f"{url}/containers/create", json={"Image": docker_daemon.image}).status_code
            == 403
        )
        assert httpx.post(f"{url}/v1.41/containers/x/kill").status_code == 403
        assert httpx.delete(f"{url}/containers/x").status_code == 403
        assert httpx.get(f"{url}/containers/x/archive").status_code == 403
        assert httpx.get(f"{url}/secrets").status_code == 403


def test_a_root_master_with_unprivileged_workers_cannot_open_the_socket(
    example_render: Render, docker_daemon: DockerDaemon
) -> None:
    """Why the proxy runs unprivileged as a whole: started as root (the image's default), nginx
    workers switch to an unprivileged user without the socket's group, and every call fails."""
    socket = docker_daemon.host.removeprefix("unix://")
    assert os.stat(socket).st_mode & 0o007 == 0  # not world-accessible (never made so)
    with proxy(example_render, socket, ["env"]) as url:
        assert httpx.get(f"{url}/_ping").status_code == 502
