"""The Docker daemon local mode and the tests talk to: $DOCKER_HOST or the default socket.

`connect()` checks that a daemon answers before anything is started, and otherwise stops with
one line saying how to get one; `answering()` is the probe behind it (the test fixtures use it
to decide whether to start a throwaway daemon of their own).
"""

from __future__ import annotations

import os
import socket

import docker
import docker.errors

DEFAULT_HOST = "unix:///var/run/docker.sock"
START_HINT = (
    "start one (as root: `dockerd --bridge=none --iptables=false &`, "
    "or `systemctl start docker`) or point DOCKER_HOST at one"
)


class DockerUnavailable(RuntimeError):
    """No Docker daemon answers; the message says how to start one."""


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def _ping(path: str) -> None:
    """`GET /_ping` on the unix socket; raises OSError when nothing (or no daemon) answers."""
    with socket.socket(socket.AF_UNIX) as probe:
        probe.settimeout(5)
        probe.connect(path)
        probe.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
        if not probe.recv(64).startswith(b"HTTP/1."):
            raise ConnectionRefusedError(f"{path} does not speak HTTP")


def answering(host: str) -> docker.DockerClient | None:
    """A client if a daemon answers at this unix socket (probed with a plain socket first: a
    failed docker client leaves its connection open)."""
    try:
        _ping(host.removeprefix("unix://"))
    except OSError:
        return None
    return docker.DockerClient(base_url=host, version="auto", timeout=60)


def connect(host: str | None = None) -> tuple[str, docker.DockerClient]:
    """(DOCKER_HOST value, client) of the daemon that answers, or DockerUnavailable."""
    host = host or docker_host()
    if not host.startswith("unix://"):
        try:
            client = docker.DockerClient(base_url=host, version="auto", timeout=60)
        except docker.errors.DockerException as error:
            raise DockerUnavailable(f"no Docker daemon answers at {host} ({error})") from None
        return host, client
    path = host.removeprefix("unix://")
    try:
        _ping(path)
    except PermissionError:
        raise DockerUnavailable(
            f"no permission on {path}: run as root or as a member of the docker group"
        ) from None
    except OSError:
        raise DockerUnavailable(f"no Docker daemon answers at {host}: {START_HINT}") from None
    return host, docker.DockerClient(base_url=host, version="auto", timeout=60)


def remove_by_prefix(client: docker.DockerClient, prefix: str, volumes: bool = False) -> None:
    """Remove the containers (and with `volumes`, the volumes) whose names start with `prefix`."""
    for container in client.containers.list(all=True, filters={"name": prefix}):
        if container.name.startswith(prefix):
            container.remove(force=True)
    if volumes:
        for volume in client.volumes.list(filters={"name": prefix}):
            if volume.name.startswith(prefix):
                volume.remove(force=True)
