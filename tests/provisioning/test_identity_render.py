"""The GitLab login as a deploy writes it (make render of both inventories): MLflow's and the
MinIO console's OpenID settings, oauth2-proxy in the Compose project, nginx's per-location login
checks, and no shared web password left anywhere.
"""

from __future__ import annotations

import re
import stat

import pytest
import yaml

from tests.fixtures.provisioning import INVENTORIES, REPO, Render

PLACEHOLDER = "issued-by-gitlab-at-deploy"


def env_file(path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs if key and not key.startswith("#")}


@pytest.fixture(params=INVENTORIES)
def render(request: pytest.FixtureRequest, renders: dict[str, Render]) -> Render:
    return renders[request.param]


def platform(render: Render):
    return (
        render.host("svc-01")
        if (render.dest / "svc-01").exists()
        else render.host(render.hosts()[0])
    )


def test_mlflow_logs_in_through_gitlab_with_no_default_permission(render: Render) -> None:
    path = platform(render) / "opt/platform/env/mlflow-oidc.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    env = env_file(path)
    domain = env["OIDC_ISSUER"].removeprefix("https://gitlab.")
    assert env["OIDC_DISCOVERY_URL"] == f"https://gitlab.{domain}/.well-known/openid-configuration"
    assert env["OIDC_GROUP_NAME"].split(",") == ["ml-users", "platform-admins"]
    assert env["OIDC_ADMIN_GROUP_NAME"] == "platform-admins"
    assert env["DEFAULT_MLFLOW_PERMISSION"] == "NO_PERMISSIONS"
    assert env["RESTRICT_RESOURCE_CREATION"] == "true"
    assert env["OIDC_USERINFO_GROUPS"] == "true"
    assert env["OIDC_AUDIENCE"] == f"https://mlflow.{domain}"
    assert env["OIDC_USERNAME_FIELD"] == "email,user_email"
    assert env["TRUSTED_PROXIES"] == "172.30.0.10"
    assert env["OIDC_USERS_DB_URI"].startswith("postgresql+psycopg://mlflow:")
    assert env["OIDC_ALEMBIC_VERSION_TABLE"] == "oidc_alembic_version"
    # A render cannot know the client GitLab issues at deploy time; it says so.
    assert env["OIDC_CLIENT_ID"] == PLACEHOLDER


def test_minio_console_uses_its_own_openid_connect(render: Render) -> None:
    env = env_file(platform(render) / "opt/platform/env/minio-oidc.env")
    domain = env["MINIO_IDENTITY_OPENID_CONFIG_URL"].split("gitlab.", 1)[1].split("/")[0]
    assert env["MINIO_IDENTITY_OPENID_CLAIM_NAME"] == "groups"
    assert env["MINIO_IDENTITY_OPENID_CLAIM_USERINFO"] == "on"
    assert env["MINIO_IDENTITY_OPENID_REDIRECT_URI"] == f"https://console.{domain}/oauth_callback"
    assert env["MINIO_IDENTITY_OPENID_SCOPES"] == "openid,profile,email"


def test_compose_runs_oauth2_proxy_and_mlflow_with_the_plugin(render: Render) -> None:
    compose = yaml.safe_load((platform(render) / "opt/platform/compose/compose.yml").read_text())
    services = compose["services"]
    proxy = services["oauth2-proxy"]
    assert proxy["image"].startswith("quay.io/oauth2-proxy/oauth2-proxy@sha256:")
    flags = proxy["command"]
    assert "--provider=gitlab" in flags
    assert "--set-xauthrequest" in flags
    assert "--reverse-proxy" in flags
    assert [f for f in flags if f.startswith("--gitlab-group=")] == [
        "--gitlab-group=ml-users",
        "--gitlab-group=platform-admins",
    ]
    assert "--app-name=oidc-auth" in services["mlflow"]["command"]
    optional = [e for e in services["mlflow"]["env_file"] if isinstance(e, dict)]
    assert optional == [{"path": "/opt/platform/env/mlflow-oidc.env", "required": False}]
    dockerfile = (platform(render) / "opt/platform/mlflow/Dockerfile").read_text()
    assert "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n" in dockerfile
    # mlflow-oidc-auth needs Python >= 3.12: MLflow is built on the locked `mlflow_python`.
    versions = yaml.safe_load((REPO / "ansible/versions.yml").read_text())["platform_images"]
    assert re.fullmatch(r"python:3\.1[2-9][.\w-]*", versions["mlflow_python"])
    base = services["mlflow"]["build"]["args"]["BASE_IMAGE"]
    assert base.startswith("python@sha256:")
    assert base != services["bridge"]["build"]["args"]["BASE_IMAGE"]  # the bridge stays on 3.11
    assert "mlflow-oidc-auth==" in dockerfile


def test_nginx_checks_logins_per_location_and_strips_identity_headers(render: Render) -> None:
    nginx = (platform(render) / "opt/platform/nginx/nginx.conf").read_text()
    assert "auth_basic" not in nginx
    assert not (platform(render) / "opt/platform/nginx/htpasswd").exists()
    servers = re.split(r"\n    # ", nginx)
    bridge = next(s for s in servers if s.startswith("bridge."))
    assert "auth_request /oauth2/auth;" in bridge
    assert "allowed_groups=platform-admins" in bridge
    assert re.search(r"location /admin/ \{\s+auth_request /oauth2/auth/1;", bridge)
    for public in ("/hooks/", "/api/"):
        block = bridge.split(f"location {public} {{", 1)[1].split("\n        }", 1)[0]
        assert "auth_request" not in block
        assert 'proxy_set_header X-Auth-Request-User "";' in block
    # Every `set` and every proxy_pass sits in a location, never at server level (auth_request
    # subrequests run server-level `set`s again).
    for server in servers:
        depth = 0
        for line in server.splitlines():
            if depth == 1 and line.strip().startswith(("set ", "proxy_set_header", "proxy_pass")):
                pytest.fail(f"server-level directive: {line.strip()}")
            depth += line.count("{") - line.count("}")
    hub = next(s for s in servers if s.startswith("hub."))
    assert "proxy_read_timeout 1d;" in hub
    assert "proxy_set_header Upgrade $http_upgrade;" in hub


def test_no_shared_web_password_is_read_or_written(render: Render) -> None:
    assert not (render.secrets / "web").exists()
    assert "web/" not in render.audit.read_text()
    for path in render.dest.rglob("*"):
        if path.is_file():
            assert "MLFLOW_TRACKING_PASSWORD" not in path.read_text(errors="replace"), path
