"""Hub login through the GitLab stand-in: allowed and refused by group, admin by group.

Real JupyterHub + configurable-http-proxy + GenericOAuthenticator, logging in through the
stand-in's authorize/token/userinfo endpoints (browserless: the stand-in's test-user cookie).
"""

from __future__ import annotations

import pytest

from tests.fixtures.dev_hub import Hub, HubFactory


@pytest.fixture(scope="module")
def hub(start_hub: HubFactory) -> Hub:
    return start_hub()


def test_a_member_of_an_allowed_group_logs_in(hub: Hub) -> None:
    token = hub.api_token("alice")
    me = hub.api(token).get("/user").json()
    assert me["name"] == "alice"
    assert me["admin"] is False
    # manage_groups: the hub's groups mirror the GitLab groups of the login.
    assert "team-a" in me["groups"]


def test_a_user_outside_the_allowed_groups_is_refused(hub: Hub) -> None:
    client, response = hub.logged_in("mallory")
    assert response.status_code == 403
    assert client.get(f"{hub.url}/hub/api/user").status_code == 403


def test_admins_come_from_the_admin_group(hub: Hub) -> None:
    token = hub.api_token("carol")
    assert hub.api(token).get("/user").json()["admin"] is True
    users = hub.api(token).get("/users").json()
    assert {"alice", "carol"} <= {user["name"] for user in users}
    assert "mallory" not in {user["name"] for user in users}


def test_a_non_admin_cannot_list_users(hub: Hub) -> None:
    token = hub.api_token("bob")
    assert hub.api(token).get("/users").status_code == 403


def test_no_token_and_a_forged_identity_header_get_nothing(hub: Hub) -> None:
    client = hub.client()
    response = client.get(
        f"{hub.url}/hub/api/user", headers={"X-Forwarded-User": "carol", "Remote-User": "carol"}
    )
    assert response.status_code == 403
