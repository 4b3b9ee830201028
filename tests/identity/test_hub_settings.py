"""The hub's settings and the `platform ssh-config` helper, without a running hub."""

from __future__ import annotations

from pathlib import Path

import pytest
from platform_hub import cli
from platform_hub.settings import REQUIRED, MissingSetting, configure
from traitlets.config import Config


def _env(tmp_path: Path, **changes: str) -> dict[str, str]:
    env = {
        "HUB_GITLAB_URL": "https://gitlab.example.org/",
        "HUB_PUBLIC_URL": "https://hub.example.org",
        "HUB_OAUTH_CLIENT_ID": "hub",
        "HUB_OAUTH_CLIENT_SECRET": "s3cret",
        "HUB_ALLOWED_GROUPS": "team-a, team-b/sub,",
        "HUB_ADMIN_GROUPS": "platform-admins",
        "HUB_DEV_IMAGE": "registry.example.org/platform/environments/dev@sha256:" + "0" * 64,
        "HUB_DATA_DIR": str(tmp_path),
        "JUPYTERHUB_CRYPT_KEY": "0" * 64,
    }
    env.update(changes)
    return env


def test_a_complete_environment_makes_the_hub_configuration(tmp_path: Path) -> None:
    config = Config()
    configure(config, _env(tmp_path, HUB_NETWORK="loopback", HUB_GPUS="0, ,GPU-abc"))
    oauth = config.GenericOAuthenticator
    assert oauth.userdata_url == "https://gitlab.example.org/oauth/userinfo"
    assert oauth.allowed_groups == {"team-a", "team-b/sub"}
    assert (oauth.client_id, oauth.client_secret) == ("hub", "s3cret")
    assert oauth.manage_groups is True
    assert oauth.auth_state_groups_key == "oauth_user.groups"
    assert config.DevSpawner.loopback is True
    assert config.DevSpawner.gpus == ["0", "GPU-abc"]
    assert config.DevSpawner.cmd == ["jupyterhub-singleuser"]
    roles = config.JupyterHub.load_roles
    assert roles[0]["scopes"] == [
        "list:users",
        "read:users:activity",
        "read:servers",
        "delete:servers",
    ]


@pytest.mark.parametrize("name", [*REQUIRED, "JUPYTERHUB_CRYPT_KEY"])
def test_a_missing_setting_stops_the_hub_and_names_it(tmp_path: Path, name: str) -> None:
    with pytest.raises(MissingSetting, match=name):
        configure(Config(), _env(tmp_path, **{name: ""}))


def test_the_ssh_config_block_uses_the_narrow_token_over_wss() -> None:
    block = cli.ssh_config_block("https://hub.example.org/", "alice", "t0k3n", "dev-alice")
    assert block.startswith("Host dev-alice\n")
    assert "    User scientist\n" in block
    assert (
        "ProxyCommand websocat --binary -H='Authorization: token t0k3n' asyncstdio: "
        "wss://hub.example.org/user/alice/sshd/\n"
    ) in block


def test_ssh_config_without_a_token_says_how_to_get_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    assert cli.main(["ssh-config", "--hub", "https://hub.example.org", "--user", "alice"]) == 2
    assert "make one at <hub>/hub/token" in capsys.readouterr().err


def test_ssh_config_refuses_a_hub_url_that_is_not_http(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "t")
    assert cli.main(["ssh-config", "--hub", "file:///etc/passwd", "--user", "alice"]) == 2
    assert "must start with https://" in capsys.readouterr().err
