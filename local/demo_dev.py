"""`make demo-dev`: the platform's logins on loopback, for trying them out by hand.

    python -m local.demo_dev up      # start (or reuse) the services, print how to log in
    python -m local.demo_dev down    # stop them, remove .demo-dev/

`up` starts a throwaway Postgres, an S3 endpoint (moto), the GitLab stand-in (an OpenID
provider with GitLab's paths and claims, local/identity) with a few test users, and MLflow with
mlflow-oidc-auth logging in through it (group gate, admins by group, one grant per group made
by the same group sync the deploy runs). `make demo` is independent of all this.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg

from local.identity.mlflow_oidc import LocalMlflowOidc, ensure_venv
from local.identity.standin import GitLabStandin, login
from local.ports import free_port
from local.postgres import LocalPostgres
from local.s3 import LocalS3

REPO = Path(__file__).resolve().parents[1]
STATE_DIR = REPO / ".demo-dev"
GROUP_SYNC = REPO / "ansible" / "roles" / "identity" / "files" / "mlflow_group_sync.py"
LOGIN_GROUPS = ["team-a", "team-b"]
ADMIN_GROUPS = ["platform-admins"]


def demo_users() -> list[dict[str, Any]]:
    """Test users with fresh passwords: two teams, an admin, and one outside every group."""
    cast = [
        (1001, "alice", ["team-a"]),
        (1002, "bob", ["team-b"]),
        (1003, "admin", ["platform-admins"]),
        (1004, "eve", ["outsiders"]),
    ]
    return [
        {"id": uid, "username": name, "password": secrets.token_urlsafe(9), "groups": groups}
        for uid, name, groups in cast
    ]


def say(message: str = "") -> None:
    print(message, flush=True)


class DemoDev:
    def __init__(self, state_dir: Path = STATE_DIR) -> None:
        self.state_dir = state_dir
        self.state_file = state_dir / "state.json"
        self.state: dict[str, Any] = (
            json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        )

    @property
    def services_dir(self) -> Path:
        return self.state_dir / "services"

    def postgres(self) -> LocalPostgres:
        return LocalPostgres(self.state_dir / "postgres", port=self.state["ports"]["postgres"])

    def s3(self) -> LocalS3:
        return LocalS3(self.services_dir, port=self.state["ports"]["s3"])

    def standin(self) -> GitLabStandin:
        mlflow_callback = f"http://127.0.0.1:{self.state['ports']['mlflow']}/callback"
        config = {
            "users": self.state["users"],
            "clients": [
                {
                    "client_id": "mlflow",
                    "client_secret": self.state["mlflow_client_secret"],
                    "redirect_uris": [mlflow_callback],
                },
                *self.state.get("extra_clients", []),
            ],
        }
        return GitLabStandin(
            self.services_dir,
            config,
            port=self.state["ports"]["gitlab"],
            admin_token=self.state["gitlab_admin_token"],
        )

    def mlflow(self) -> LocalMlflowOidc:
        postgres = self.postgres()
        return LocalMlflowOidc(
            self.services_dir,
            backend_url=postgres.url("mlflow"),
            auth_db_url=postgres.url("mlflow_auth"),
            s3=self.s3(),
            issuer=self.standin().url,
            client_id="mlflow",
            client_secret=self.state["mlflow_client_secret"],
            allowed_groups=LOGIN_GROUPS + ADMIN_GROUPS,
            admin_groups=ADMIN_GROUPS,
            port=self.state["ports"]["mlflow"],
            secret_key=self.state["mlflow_secret_key"],
        )

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as f:
            json.dump(self.state, f, indent=2)

    def running(self) -> bool:
        return bool(self.state.get("ports")) and all(
            daemon.is_running() for daemon in (self.standin().daemon, self.mlflow().daemon)
        )

    def up(self) -> None:
        if self.running():
            say("The demo-dev services already run.")
            self.print_howto()
            return
        self.down(quiet=True)
        say("==> MLflow with mlflow-oidc-auth needs Python >= 3.12: preparing .venv-mlflow-oidc")
        ensure_venv()
        self.state = {
            "ports": {name: free_port() for name in ("postgres", "s3", "gitlab", "mlflow")},
            "users": demo_users(),
            "mlflow_client_secret": secrets.token_urlsafe(24),
            "mlflow_secret_key": secrets.token_urlsafe(32),
            "gitlab_admin_token": "glpat-" + secrets.token_urlsafe(20),
        }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o755)  # the Postgres server runs as `postgres` when we are root
        self.save()
        say("==> Postgres, S3 (moto)")
        postgres = self.postgres()
        postgres.start()
        with psycopg.connect(postgres.url(), autocommit=True) as conn:
            for database in ("mlflow", "mlflow_auth"):
                conn.execute(f"CREATE DATABASE {database}")  # fixed names
        self.s3().start()
        say("==> GitLab stand-in (OpenID provider with GitLab's paths and claims)")
        self.standin().start()
        say("==> MLflow behind GitLab login (the first start takes a minute or two)")
        self.mlflow().start()
        say("==> Group grants in MLflow (the deploy's group sync)")
        self.sync_groups()
        self.print_howto()

    def sync_groups(self) -> None:
        standin, mlflow = self.standin(), self.mlflow()
        with httpx.Client(timeout=60) as admin:
            login(admin, standin, "admin", f"{mlflow.url}/login")
            token = admin.patch(f"{mlflow.url}/api/2.0/mlflow/users/access-token", json={})
            token.raise_for_status()
            username = admin.get(f"{mlflow.url}/auth/status").json()["username"]
        tokens = self.state_dir / "tokens"
        tokens.mkdir(mode=0o700, exist_ok=True)
        for name, value in (("gitlab", standin.admin_token), ("mlflow", token.json()["token"])):
            path = tokens / name
            path.write_text(value)
            path.chmod(0o600)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "GITLAB_URL": standin.url,
            "GITLAB_TOKEN_FILE": str(tokens / "gitlab"),
            "MLFLOW_URL": mlflow.url,
            "MLFLOW_ADMIN_USER": username,
            "MLFLOW_ADMIN_TOKEN_FILE": str(tokens / "mlflow"),
        }
        subprocess.run([sys.executable, str(GROUP_SYNC)], env=env, check=True)

    def print_howto(self) -> None:
        standin, mlflow = self.standin(), self.mlflow()
        say()
        say(f"MLflow:            {mlflow.url}  (click 'Sign in with GitLab')")
        say(f"GitLab stand-in:   {standin.url}")
        say("Test users (user / password / GitLab groups):")
        for user in self.state["users"]:
            say(f"  {user['username']:6} {user['password']:14} {', '.join(user['groups'])}")
        say("alice and bob may create experiments named team-a/... and team-b/... only; admin is")
        say("an MLflow admin (group platform-admins); eve is refused (no allowed group).")
        say("Scripts: create a personal access token while signed in (MLflow's user page, or")
        say("  PATCH /api/2.0/mlflow/users/access-token), then")
        say(f"  MLFLOW_TRACKING_URI={mlflow.url} MLFLOW_TRACKING_USERNAME=alice@example.test \\")
        say("  MLFLOW_TRACKING_PASSWORD=<token> python your_script.py")
        say("Stop everything: make demo-dev-stop")

    def down(self, quiet: bool = False) -> None:
        if self.state.get("ports"):
            self.mlflow().stop()
            self.standin().stop()
            self.s3().stop()
            self.postgres().destroy()
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        if not quiet:
            say("demo-dev stopped; .demo-dev/ removed")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down"])
    args = parser.parse_args(argv)
    demo = DemoDev()
    if args.command == "up":
        demo.up()
    else:
        demo.down()


if __name__ == "__main__":
    main()
