"""MLflow behind GitLab login (`mlflow-oidc-auth`) on loopback, for tests and `make demo-dev`.

The plugin runs as MLflow's app (`mlflow server --app-name oidc-auth`) in its own Python >= 3.12
environment (`.venv-mlflow-oidc`, from `mlflow-oidc.lock`): mlflow-oidc-auth 11.0.2 does not
start on Python 3.11, the repository's default. Its settings are the production ones
(ansible/roles/mlflow): login limited to `allowed_groups`, admins from `admin_groups`, no
permission by default, groups from GitLab's userinfo, CI ID tokens accepted as bearer tokens
when their audience is the MLflow URL.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from local.mlflow import LocalMlflow, sqlalchemy_url

HERE = Path(__file__).resolve().parent
LOCK = HERE / "mlflow-oidc.lock"
VENV = HERE.parents[1] / ".venv-mlflow-oidc"
# Debian 13 and Ubuntu 24.04 ship python3.12+; this machine has it under pyenv.
PYTHON_CANDIDATES = ("python3.13", "python3.12", "/root/.pyenv/versions/3.12.1/bin/python3")


def python312() -> str:
    """A Python >= 3.12 interpreter: $MLFLOW_OIDC_PYTHON, else the first candidate found."""
    chosen = os.environ.get("MLFLOW_OIDC_PYTHON")
    for candidate in (chosen,) if chosen else PYTHON_CANDIDATES:
        found = shutil.which(candidate)
        # A name on PATH may not run (a pyenv shim of a version that is not selected).
        if found and _is_312_or_newer(found):
            return found
    raise RuntimeError(
        "mlflow-oidc-auth needs Python >= 3.12 and none was found; "
        "install one and set MLFLOW_OIDC_PYTHON=/path/to/python3.12"
    )


def _is_312_or_newer(python: str) -> bool:
    check = "import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)"
    return subprocess.run([python, "-c", check], capture_output=True, check=False).returncode == 0


def ensure_venv(venv: Path = VENV) -> Path:
    """Create the plugin's environment from the lock when missing (about a minute)."""
    stamp = venv / ".installed"
    if stamp.exists() and stamp.read_text() == LOCK.read_text():
        return venv
    subprocess.run([python312(), "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "-r", str(LOCK)], check=True
    )
    stamp.write_text(LOCK.read_text())
    return venv


@dataclass(kw_only=True)
class LocalMlflowOidc(LocalMlflow):
    """`mlflow server --app-name oidc-auth` on 127.0.0.1:`port`, logging in through `issuer`."""

    auth_db_url: str
    issuer: str
    client_id: str
    client_secret: str
    allowed_groups: Sequence[str]
    admin_groups: Sequence[str]
    trusted_proxies: Sequence[str] = ()
    public_url: str | None = None
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    name: str = "mlflow-oidc"

    @property
    def audience(self) -> str:
        """The MLflow URL users and jobs see: the audience CI ID tokens must carry."""
        return self.public_url or self.url

    @property
    def redirect_uri(self) -> str:
        return f"{self.audience}/callback"

    def environment(self) -> dict[str, str]:
        return {
            **super().environment(),
            "OIDC_USERS_DB_URI": sqlalchemy_url(self.auth_db_url),
            "OIDC_DISCOVERY_URL": f"{self.issuer}/.well-known/openid-configuration",
            "OIDC_ISSUER": self.issuer,
            "OIDC_CLIENT_ID": self.client_id,
            "OIDC_CLIENT_SECRET": self.client_secret,
            "OIDC_REDIRECT_URI": self.redirect_uri,
            "OIDC_SCOPE": "openid profile email",
            "OIDC_PROVIDER_DISPLAY_NAME": "Sign in with GitLab",
            # GitLab puts group paths (with inherited subgroups) in userinfo, not the ID token.
            "OIDC_USERINFO_GROUPS": "true",
            "OIDC_GROUPS_ATTRIBUTE": "groups",
            "OIDC_GROUP_NAME": ",".join(self.allowed_groups),
            "OIDC_ADMIN_GROUP_NAME": ",".join(self.admin_groups),
            "DEFAULT_MLFLOW_PERMISSION": "NO_PERMISSIONS",
            # Creating an experiment needs EDIT on its name: the `^<group>/.*` grants decide.
            "RESTRICT_RESOURCE_CREATION": "true",
            # A login names the user by e-mail; a CI ID token has no `email` but `user_email`
            # of the user who started the pipeline, so a job acts as that user.
            "OIDC_USERNAME_FIELD": "email,user_email",
            "OIDC_AUDIENCE": self.audience,
            "TRUSTED_PROXIES": ",".join(self.trusted_proxies),
            "SECRET_KEY": self.secret_key,
        }

    def server_command(self) -> list[str]:
        return [str(ensure_venv() / "bin" / "mlflow"), "server", "--app-name", "oidc-auth"]

    def start(self, timeout: float = 600.0) -> str:
        """The first start creates the plugin's environment and its database: minutes."""
        return super().start(timeout)
