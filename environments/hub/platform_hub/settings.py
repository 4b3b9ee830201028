"""The hub's whole configuration, from environment variables (the compose file, local mode and
the tests set them; secrets arrive as files). A missing value stops the hub with one line naming
it, rather than starting a hub that lets nobody in or everybody.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

REQUIRED = (
    "HUB_GITLAB_URL",  # GitLab, the identity provider: https://gitlab.example.org
    "HUB_PUBLIC_URL",  # how users reach the hub: https://hub.example.org
    "HUB_OAUTH_CLIENT_ID",  # the hub's GitLab application (written by the deploy's identity role)
    "HUB_OAUTH_CLIENT_SECRET",
    "HUB_ALLOWED_GROUPS",  # comma-separated GitLab group paths allowed to log in
    "HUB_ADMIN_GROUPS",  # comma-separated GitLab group paths of hub admins
    "HUB_DEV_IMAGE",  # the dev image, by digest in production
    "HUB_DATA_DIR",  # database, cookie secret, GPU allocation
)
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]


class MissingSetting(SystemExit):
    pass


def _groups(value: str) -> set[str]:
    return {group.strip() for group in value.split(",") if group.strip()}


def configure(c, env: Mapping[str, str] = os.environ) -> None:
    missing = [name for name in REQUIRED if not env.get(name)]
    if missing:
        raise MissingSetting(
            f"jupyterhub: set {', '.join(missing)} (each is described in platform_hub/settings.py)"
        )
    if not env.get("JUPYTERHUB_CRYPT_KEY"):
        raise MissingSetting("jupyterhub: set JUPYTERHUB_CRYPT_KEY (openssl rand -hex 32)")
    gitlab = env["HUB_GITLAB_URL"].rstrip("/")
    public = env["HUB_PUBLIC_URL"].rstrip("/")
    data = Path(env["HUB_DATA_DIR"])

    c.JupyterHub.bind_url = env.get("HUB_BIND_URL", "http://:8000")
    c.JupyterHub.hub_bind_url = env.get("HUB_API_BIND_URL", "http://0.0.0.0:8081")
    if env.get("HUB_CONNECT_URL"):
        c.JupyterHub.hub_connect_url = env["HUB_CONNECT_URL"]
    c.JupyterHub.db_url = f"sqlite:///{data / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(data / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(data / "jupyterhub.pid")
    if env.get("HUB_PROXY_COMMAND"):
        c.ConfigurableHTTPProxy.command = env["HUB_PROXY_COMMAND"].split()
    if env.get("HUB_PROXY_API_URL"):
        c.ConfigurableHTTPProxy.api_url = env["HUB_PROXY_API_URL"]
    # Users reach only their own server; a server reaches the hub API with its own token.
    c.JupyterHub.allow_named_servers = False

    c.JupyterHub.authenticator_class = "generic-oauth"
    oauth = c.GenericOAuthenticator
    oauth.login_service = "GitLab"
    oauth.authorize_url = f"{gitlab}/oauth/authorize"
    oauth.token_url = f"{gitlab}/oauth/token"
    oauth.userdata_url = f"{gitlab}/oauth/userinfo"
    oauth.oauth_callback_url = f"{public}/hub/oauth_callback"
    oauth.client_id = env["HUB_OAUTH_CLIENT_ID"]
    oauth.client_secret = env["HUB_OAUTH_CLIENT_SECRET"]
    # GitLab's userinfo holds `groups` (full paths, inherited membership included): no API scope.
    oauth.scope = ["openid", "profile", "email"]
    oauth.username_claim = "nickname"
    oauth.manage_groups = True
    oauth.auth_state_groups_key = "oauth_user.groups"
    oauth.allowed_groups = _groups(env["HUB_ALLOWED_GROUPS"])
    oauth.admin_groups = _groups(env["HUB_ADMIN_GROUPS"])
    # The spawner reads the GitLab user id (`sub`) from the auth state.
    oauth.enable_auth_state = True

    c.JupyterHub.spawner_class = "platform_hub.spawner.DevSpawner"
    spawner = c.DevSpawner
    spawner.image = env["HUB_DEV_IMAGE"]
    spawner.pull_policy = env.get("HUB_PULL_POLICY", "ifnotpresent")
    spawner.cmd = ["jupyterhub-singleuser"]
    spawner.gitlab_url = gitlab
    spawner.name_template = env.get("HUB_CONTAINER_NAME", "jupyter-{username}")
    spawner.remove = True  # culling removes the container; the home stays
    spawner.volumes = {env.get("HUB_HOME_VOLUME", "jupyterhub-home-{username}"): "/home/scientist"}
    spawner.notebook_dir = "/home/scientist"
    spawner.cpu_limit = float(env.get("HUB_CPU_LIMIT", "2"))
    spawner.mem_limit = env.get("HUB_MEM_LIMIT", "8G")
    spawner.start_timeout = int(env.get("HUB_START_TIMEOUT", "120"))
    spawner.http_timeout = int(env.get("HUB_HTTP_TIMEOUT", "60"))
    if env.get("HUB_NETWORK", "platform-dev") == "loopback":
        spawner.loopback = True
    else:
        spawner.network_name = env.get("HUB_NETWORK", "platform-dev")
    spawner.gpus = [gpu for gpu in env.get("HUB_GPUS", "").split(",") if gpu.strip()]
    spawner.gpu_allocation = str(data / "gpu-allocation.json")

    # Idle servers stop after HUB_CULL_IDLE seconds; every server stops after HUB_CULL_MAX_AGE
    # at the latest, because an open SSH websocket counts as activity for ever.
    culler = [
        sys.executable,
        "-m",
        "jupyterhub_idle_culler",
        f"--timeout={int(env.get('HUB_CULL_IDLE', '3600'))}",
        f"--max-age={int(env.get('HUB_CULL_MAX_AGE', '86400'))}",
        f"--cull-every={int(env.get('HUB_CULL_EVERY', '300'))}",
    ]
    c.JupyterHub.services = [{"name": "idle-culler", "command": culler}]
    c.JupyterHub.load_roles = [
        {"name": "idle-culler", "scopes": CULLER_SCOPES, "services": ["idle-culler"]},
    ]
