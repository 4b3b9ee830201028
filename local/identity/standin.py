"""The GitLab stand-in (`gitlab_standin.mjs`, npm `oidc-provider`) on a free loopback port.

GitLab itself cannot run here, so tests and `make demo-dev` log in through this OpenID
provider with GitLab's paths and claims (see the JS file's header). Users, groups, SSH keys and
the OAuth applications (clients) come from one JSON document:

    {"users": [{"id": 7, "username": "alice", "password": "...", "groups": ["team-a"],
                "email": "alice@example.test", "ssh_keys": ["ssh-ed25519 AAAA..."]}],
     "groups": ["team-a/sub"],              # extra groups nobody belongs to directly
     "clients": [{"client_id": "mlflow", "client_secret": "...",
                  "redirect_uris": ["http://127.0.0.1:5000/callback"]}]}

The signing key is generated once per `state_dir` (mode 0600) and shared by the OIDC ID tokens
and the CI job ID tokens, as GitLab's JWKS serves both.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from local.issuer import load_or_create_key
from local.ports import free_port
from local.service import Daemon

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "gitlab_standin.mjs"
REPO_ROOT = HERE.parents[1]
# `make setup` installs the pinned oidc-provider here (see OIDC_PROVIDER_VERSION in the Makefile).
NODE_MODULES = REPO_ROOT / ".venv" / "npm" / "node_modules"


def node_modules() -> Path:
    """Where oidc-provider is installed; a clear error naming the fix when it is not."""
    override = os.environ.get("PLATFORM_NODE_MODULES")
    modules = Path(override) if override else NODE_MODULES
    if not (modules / "oidc-provider" / "package.json").exists():
        raise RuntimeError(f"oidc-provider is not installed in {modules}; run `make setup`")
    return modules


def node() -> str:
    found = shutil.which("node")
    if found is None:
        raise RuntimeError("node not found; install Node.js (Debian: apt-get install nodejs)")
    return found


@dataclass
class GitLabStandin:
    """The stand-in for `config` (the JSON document above), served from `state_dir`."""

    state_dir: Path
    config: dict[str, Any]
    port: int = field(default_factory=free_port)
    admin_token: str = field(default_factory=lambda: "glpat-" + secrets.token_urlsafe(20))
    name: str = "gitlab-standin"

    @property
    def url(self) -> str:
        """GitLab's external_url: the `iss` of every token it signs."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/oauth/discovery/keys"

    @property
    def discovery_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"

    @property
    def config_file(self) -> Path:
        return self.state_dir / f"{self.name}.json"

    @property
    def key_file(self) -> Path:
        return self.state_dir / f"{self.name}-signing-key.pem"

    @property
    def daemon(self) -> Daemon:
        argv = [
            node(),
            str(SCRIPT),
            "--config",
            str(self.config_file),
            "--key",
            str(self.key_file),
            "--port",
            str(self.port),
            "--modules",
            str(node_modules()),
        ]
        return Daemon(self.name, argv, self.state_dir)

    def write_config(self) -> None:
        """The JSON document (client secrets, passwords, admin token) as a 0600 file."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        document = {**self.config, "admin_token": self.admin_token}
        descriptor = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as f:
            json.dump(document, f, indent=2)

    def start(self, timeout: float = 30.0) -> str:
        self.write_config()
        load_or_create_key(self.key_file)
        daemon = self.daemon
        daemon.start()
        daemon.wait_for_http(f"{self.url}/-/health", timeout)
        return self.url

    def restart(self) -> None:
        """Pick up a changed `config` (users, groups, clients); sessions start afresh."""
        self.stop()
        self.start()

    def is_running(self) -> bool:
        return self.daemon.is_running()

    def stop(self) -> None:
        self.daemon.stop()

    def mint_ci_token(self, user: str, project_path: str, audience: str, **claims: Any) -> str:
        """A CI job ID token for `audience`, as GitLab mints for a job `user` started."""
        answer = httpx.post(
            f"{self.url}/-/ci-token",
            json={"user": user, "project_path": project_path, "aud": audience, **claims},
            headers={"PRIVATE-TOKEN": self.admin_token},
            timeout=10,
        )
        answer.raise_for_status()
        return answer.json()["token"]


def login(
    client: httpx.Client, standin: GitLabStandin, user: str, start_url: str
) -> httpx.Response:
    """Log `client` in as `user` without a browser: set the stand-in's test-user cookie, then
    follow the relying party's redirects from `start_url` (its login URL) to the end."""
    client.get(f"{standin.url}/-/test-login", params={"user": user}).raise_for_status()
    return client.get(start_url, follow_redirects=True)
