"""The platform's real JupyterHub on loopback, for `make demo-dev` and the hub tests.

JupyterHub with environments/hub's configuration (GitLab login through the stand-in, the
platform's DevSpawner, the idle culler), configurable-http-proxy from `make setup`, and user
containers from the `dev` image on the local Docker daemon. Everything listens on 127.0.0.1 on
free ports: the proxy (the hub's public URL), the hub's API, the proxy's API; the spawner's
`loopback` mode runs each user container on the host's network with its server and sshd on free
loopback ports, because local mode may not create private-range networks. Container names (and
the homes' volume names, by default) carry a per-hub prefix, so that `stop` removes exactly
what this hub made.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker

from local.docker_daemon import remove_by_prefix
from local.ports import free_port
from local.service import Daemon

REPO = Path(__file__).resolve().parents[1]
HUB_CONFIG = REPO / "environments" / "hub" / "jupyterhub_config.py"
# `make setup` installs it (CONFIGURABLE_HTTP_PROXY_VERSION in the Makefile).
PROXY = REPO / ".venv" / "bin" / "configurable-http-proxy"
CLIENT_ID = "jupyterhub"


def ssh_keypair(folder: Path, name: str) -> tuple[Path, str]:
    """A new ed25519 key pair for a test user: (private key file, public key line)."""
    key = folder / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
    )
    return key, (folder / f"{name}.pub").read_text().strip()


def _new_prefix() -> str:
    return f"platform-dev-{secrets.token_hex(3)}-"


@dataclass
class LocalHub:
    """JupyterHub on 127.0.0.1:`port`, logging in through the GitLab at `gitlab_url`.

    `home_volume` is the spawner's volume name template (`{username}` expands): by default one
    named volume per user, `<prefix>home-<user>`, as in production; a path makes bind-mounted
    folders instead (the tests look at file owners on the host). `env` adds or overrides
    settings of environments/hub (culler, GPUs, limits).
    """

    state_dir: Path
    gitlab_url: str
    image: str
    allowed_groups: Sequence[str]
    admin_groups: Sequence[str]
    port: int = field(default_factory=free_port)
    api_port: int = field(default_factory=free_port)
    proxy_api_port: int = field(default_factory=free_port)
    client_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    crypt_key: str = field(default_factory=lambda: secrets.token_hex(32))
    proxy_auth_token: str = field(default_factory=lambda: secrets.token_hex(32))
    container_prefix: str = field(default_factory=_new_prefix)
    home_volume: str | None = None
    docker_host: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    name: str = "jupyterhub"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def oauth_client(self) -> dict[str, Any]:
        """The hub's OAuth application, for the stand-in's `clients`."""
        return {
            "client_id": CLIENT_ID,
            "client_secret": self.client_secret,
            "redirect_uris": [f"{self.url}/hub/oauth_callback"],
        }

    @property
    def data(self) -> Path:
        """The hub's database, cookie secret and GPU allocation."""
        return self.state_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.daemon.log_file

    def environment(self) -> dict[str, str]:
        settings = {
            "HUB_GITLAB_URL": self.gitlab_url,
            "HUB_PUBLIC_URL": self.url,
            "HUB_OAUTH_CLIENT_ID": CLIENT_ID,
            "HUB_OAUTH_CLIENT_SECRET": self.client_secret,
            "HUB_ALLOWED_GROUPS": ",".join(self.allowed_groups),
            "HUB_ADMIN_GROUPS": ",".join(self.admin_groups),
            "HUB_DEV_IMAGE": self.image,
            "HUB_PULL_POLICY": "never",  # built here; nothing can be pulled
            "HUB_DATA_DIR": str(self.data),
            "HUB_BIND_URL": self.url,
            "HUB_API_BIND_URL": f"http://127.0.0.1:{self.api_port}",
            "HUB_PROXY_API_URL": f"http://127.0.0.1:{self.proxy_api_port}",
            "HUB_PROXY_COMMAND": str(PROXY),
            "HUB_NETWORK": "loopback",
            "HUB_HOME_VOLUME": self.home_volume or f"{self.container_prefix}home-{{username}}",
            "HUB_CONTAINER_NAME": f"{self.container_prefix}{{username}}",
            "JUPYTERHUB_CRYPT_KEY": self.crypt_key,
            "CONFIGPROXY_AUTH_TOKEN": self.proxy_auth_token,
        }
        if self.docker_host:
            settings["DOCKER_HOST"] = self.docker_host
        return {**settings, **self.env}

    @property
    def daemon(self) -> Daemon:
        argv = [sys.executable, "-m", "jupyterhub", "-f", str(HUB_CONFIG)]
        return Daemon(self.name, argv, self.state_dir, env=self.environment(), cwd=self.data)

    def start(self, timeout: float = 180.0) -> str:
        """Start the hub (it starts its proxy and the culler) and wait for /hub/health.
        Generous timeout: the hub starts in a few seconds, but a shared machine is slow."""
        if not PROXY.exists():
            raise RuntimeError(f"configurable-http-proxy not found at {PROXY}; run make setup")
        self.data.mkdir(parents=True, exist_ok=True)
        daemon = self.daemon
        daemon.start()
        daemon.wait_for_http(f"{self.url}/hub/health", timeout)
        return self.url

    def is_running(self) -> bool:
        return self.daemon.is_running()

    def stop(self, client: docker.DockerClient | None, remove_volumes: bool = False) -> None:
        """Stop the hub, its proxy and culler (one process group), then remove the containers
        it spawned (the hub stops them on SIGTERM; this also catches a hub that was killed)
        and, with `remove_volumes`, the homes' named volumes."""
        self.daemon.stop(timeout=60)
        if client is not None:
            remove_by_prefix(client, self.container_prefix, volumes=remove_volumes)
