"""The rendered hub (role jupyterhub) of both inventories: its Compose service, network, image
recipe and environment file, and that the environment file makes a complete hub configuration
when the real `platform_hub.settings.configure` reads it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml
from platform_hub.settings import configure
from traitlets.config import Config

from tests.fixtures.provisioning import REPO, Render

SERVICE_HOSTS = {"example": "svc-01", "single-host": "platform-01"}
INVENTORIES = list(SERVICE_HOSTS)


def _root(renders: dict[str, Render], inventory: str) -> Path:
    return renders[inventory].host(SERVICE_HOSTS[inventory])


def _env(path: Path) -> dict[str, str]:
    pairs = [line.split("=", 1) for line in path.read_text().splitlines() if "=" in line]
    return {key: value for key, value in pairs if not key.startswith("#")}


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_the_hub_service_publishes_nothing_and_shares_one_network_with_the_dev_containers(
    renders: dict[str, Render], inventory: str
) -> None:
    compose = yaml.safe_load(
        (_root(renders, inventory) / "opt/platform/compose/compose.yml").read_text()
    )
    hub = compose["services"]["jupyterhub"]
    assert "ports" not in hub
    assert hub["networks"] == ["platform", "dev"]
    assert compose["networks"]["dev"]["name"] == "platform-dev"
    assert "/var/run/docker.sock:/var/run/docker.sock" in hub["volumes"]
    assert hub["env_file"][1].endswith("/jupyterhub-oauth.env")
    # No other service is on the dev containers' network.
    others = [
        n
        for n, s in compose["services"].items()
        if n != "jupyterhub" and "dev" in (s.get("networks") or [])
    ]
    assert others == []


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_the_environment_file_is_secret_and_makes_a_complete_hub_configuration(
    renders: dict[str, Render], inventory: str, tmp_path: Path
) -> None:
    path = _root(renders, inventory) / "opt/platform/env/jupyterhub.env"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    env = _env(path)
    assert len(env["JUPYTERHUB_CRYPT_KEY"]) == 64
    oauth_env = _env(path.with_name("jupyterhub-oauth.env"))
    assert stat.S_IMODE(path.with_name("jupyterhub-oauth.env").stat().st_mode) == 0o600
    assert set(oauth_env) == {"HUB_OAUTH_CLIENT_ID", "HUB_OAUTH_CLIENT_SECRET"}
    config = Config()
    configure(config, {**env, **oauth_env, "HUB_DATA_DIR": str(tmp_path)})
    oauth = config.GenericOAuthenticator
    assert oauth.allowed_groups == {"ml-users"}
    assert oauth.admin_groups == {"platform-admins"}
    assert oauth.authorize_url.startswith("https://gitlab.")
    assert oauth.oauth_callback_url.startswith("https://hub.")
    assert oauth.enable_auth_state is True
    spawner = config.DevSpawner
    assert spawner.network_name == "platform-dev"
    assert spawner.remove is True
    assert spawner.volumes == {"jupyterhub-home-{username}": "/home/scientist"}
    culler = config.JupyterHub.services[0]["command"]
    assert "--max-age=86400" in culler


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_the_image_recipe_pins_its_packages_and_carries_the_hub_package(
    renders: dict[str, Render], inventory: str
) -> None:
    folder = _root(renders, inventory) / "opt/platform/jupyterhub"
    recipe = (folder / "Dockerfile").read_text()
    # The base is the locked digest, passed as a build argument (compose and the build task).
    assert "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n" in recipe
    compose_file = _root(renders, inventory) / "opt/platform/compose/compose.yml"
    compose = yaml.safe_load(compose_file.read_text())
    assert "@sha256:" in compose["services"]["jupyterhub"]["build"]["args"]["BASE_IMAGE"]
    assert '"jupyterhub==6.1.1"' in recipe
    assert '"configurable-http-proxy@5.3.0"' in recipe
    source = REPO / "environments" / "hub"
    for path in sorted(source.rglob("*.py")):
        relative = path.relative_to(source)
        assert (folder / "hub" / relative).read_bytes() == path.read_bytes(), relative
