"""MLflow with mlflow-oidc-auth behind the GitLab stand-in, once per test session."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from local.identity.mlflow_oidc import LocalMlflowOidc
from local.identity.standin import GitLabStandin, login
from local.ports import free_port
from local.postgres import LocalPostgres
from local.s3 import LocalS3
from tests.fixtures.identity import StandinFactory, standin_config
from tests.fixtures.postgres import create_database

ALLOWED_GROUPS = ["team-a", "team-b", "platform-admins"]
ADMIN_GROUPS = ["platform-admins"]
MLFLOW_CLIENT = {"client_id": "mlflow", "client_secret": "mlflow-client-secret"}
API = "/api/2.0/mlflow"
GROUP_SYNC = (
    Path(__file__).resolve().parents[2] / "ansible/roles/identity/files/mlflow_group_sync.py"
)


@dataclass
class MlflowSso:
    server: LocalMlflowOidc
    standin: GitLabStandin

    @property
    def url(self) -> str:
        return self.server.url

    @contextlib.contextmanager
    def session(self, user: str) -> Iterator[httpx.Client]:
        """A browser-like client logged in as `user` through GitLab's login."""
        with httpx.Client(timeout=60) as client:
            login(client, self.standin, user, f"{self.url}/login")
            yield client

    def access_token(self, session: httpx.Client) -> str:
        """A personal access token for scripts, issued to the session's user."""
        answer = session.patch(f"{self.url}{API}/users/access-token", json={})
        answer.raise_for_status()
        return answer.json()["token"]

    def username(self, session: httpx.Client) -> str:
        return session.get(f"{self.url}/auth/status").json()["username"]

    def sync_groups(self, admin: str, token: str, workdir: Path) -> subprocess.CompletedProcess:
        """Run the deploy's group sync (role mlflow) as MLflow admin `admin` with `token`."""
        (workdir / "gitlab.token").write_text(self.standin.admin_token)
        (workdir / "mlflow.token").write_text(token)
        env = {
            "PATH": os.environ["PATH"],
            "GITLAB_URL": self.standin.url,
            "GITLAB_TOKEN_FILE": str(workdir / "gitlab.token"),
            "MLFLOW_URL": self.url,
            "MLFLOW_ADMIN_USER": admin,
            "MLFLOW_ADMIN_TOKEN_FILE": str(workdir / "mlflow.token"),
        }
        return subprocess.run(
            [sys.executable, str(GROUP_SYNC)], env=env, capture_output=True, text=True, check=False
        )

    def ci_token(self, user: str, project_path: str, audience: str | None = None) -> str:
        return self.standin.mint_ci_token(user, project_path, audience or self.server.audience)


@pytest.fixture(scope="session")
def mlflow_sso(
    session_identity_standin: StandinFactory,
    tmp_path_factory: pytest.TempPathFactory,
    postgres: LocalPostgres,
    local_s3: LocalS3,
) -> Iterator[MlflowSso]:
    port = free_port()
    client = {**MLFLOW_CLIENT, "redirect_uris": [f"http://127.0.0.1:{port}/callback"]}
    standin = session_identity_standin(standin_config([client]))
    state: Path = tmp_path_factory.mktemp("mlflow-oidc")
    server = LocalMlflowOidc(
        state,
        backend_url=create_database(postgres),
        auth_db_url=create_database(postgres),
        s3=local_s3,
        issuer=standin.url,
        client_id=MLFLOW_CLIENT["client_id"],
        client_secret=MLFLOW_CLIENT["client_secret"],
        allowed_groups=ALLOWED_GROUPS,
        admin_groups=ADMIN_GROUPS,
        port=port,
    )
    server.start()
    yield MlflowSso(server, standin)
    server.stop()


@dataclass
class GroupSync:
    """The deploy's first group sync on the session's MLflow, and the admin it ran as."""

    admin: str
    token: str
    first_run: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def group_sync(mlflow_sso: MlflowSso, tmp_path_factory: pytest.TempPathFactory) -> GroupSync:
    """Runs the group sync once per session, as the deploy's timer would after the install; every
    module that needs the grants shares this run, so its output is that of a first sync."""
    with mlflow_sso.session("carol") as admin:
        token = mlflow_sso.access_token(admin)
        username = mlflow_sso.username(admin)
    done = mlflow_sso.sync_groups(username, token, tmp_path_factory.mktemp("sync"))
    assert done.returncode == 0, done.stderr
    return GroupSync(username, token, done)
