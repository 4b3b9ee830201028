"""The GitLab stand-in speaks GitLab's OpenID paths and claims (a real oidc-provider)."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from local.identity.standin import GitLabStandin, login
from tests.fixtures.identity import StandinFactory, standin_config

REDIRECT = "http://127.0.0.1:9/callback"  # never reached: the test reads the redirect itself
CLIENT = {"client_id": "rp", "client_secret": "rp-secret", "redirect_uris": [REDIRECT]}


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> GitLabStandin:
    config = standin_config([CLIENT])
    config["users"][0]["ssh_keys"] = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey alice@laptop"]
    server = GitLabStandin(tmp_path_factory.mktemp("standin"), config)
    server.start()
    yield server
    server.stop()


def authorize(client: httpx.Client, standin: GitLabStandin, **params: str) -> httpx.Response:
    """Follow the stand-in's redirects until it sends the browser back to the relying party."""
    answer = client.get(
        f"{standin.url}/oauth/authorize",
        params={
            "client_id": "rp",
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": "openid profile email",
            "state": "s1",
            "nonce": "n1",
            **params,
        },
    )
    while answer.is_redirect and not answer.headers["location"].startswith(REDIRECT):
        answer = client.get(answer.url.join(answer.headers["location"]))
    return answer


def exchange(standin: GitLabStandin, answer: httpx.Response) -> dict:
    assert answer.is_redirect, answer.text
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    tokens = httpx.post(
        f"{standin.url}/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        auth=("rp", "rp-secret"),
    )
    tokens.raise_for_status()
    return tokens.json()


def verify(standin: GitLabStandin, token: str, audience: str) -> dict:
    key = jwt.PyJWKClient(standin.jwks_url).get_signing_key_from_jwt(token)
    return jwt.decode(token, key, algorithms=["RS256"], audience=audience, issuer=standin.url)


def test_discovery_names_gitlabs_paths(standin: GitLabStandin) -> None:
    document = httpx.get(standin.discovery_url).json()
    assert document["issuer"] == standin.url
    for key, path in {
        "authorization_endpoint": "/oauth/authorize",
        "token_endpoint": "/oauth/token",
        "userinfo_endpoint": "/oauth/userinfo",
        "jwks_uri": "/oauth/discovery/keys",
    }.items():
        assert document[key] == standin.url + path


def test_login_by_hint_gives_gitlab_claims(standin: GitLabStandin) -> None:
    with httpx.Client() as client:
        tokens = exchange(standin, authorize(client, standin, login_hint="alice"))
    claims = verify(standin, tokens["id_token"], "rp")
    assert claims["sub"] == "11"
    assert claims["nickname"] == claims["preferred_username"] == "alice"
    assert claims["groups_direct"] == ["team-a"]
    assert "groups" not in claims
    info = httpx.get(
        f"{standin.url}/oauth/userinfo",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    ).json()
    # Membership is inherited by subgroups: userinfo lists them, the ID token does not.
    assert info["groups"] == ["team-a", "team-a/vision"]
    assert info["sub"] == "11"
    assert "groups_direct" not in info


def test_login_form_checks_the_password(standin: GitLabStandin) -> None:
    with httpx.Client() as client:
        page = authorize(client, standin)
        assert page.status_code == 200
        action = re.search(r'action="([^"]+)"', page.text).group(1)
        wrong = client.post(standin.url + action, data={"username": "bob", "password": "nope"})
        assert wrong.status_code == 401
        assert "Invalid login or password" in wrong.text
        right = client.post(
            standin.url + action, data={"username": "bob", "password": "bob-pass-1"}
        )
        while right.is_redirect and not right.headers["location"].startswith(REDIRECT):
            right = client.get(right.url.join(right.headers["location"]))
        tokens = exchange(standin, right)
    assert verify(standin, tokens["id_token"], "rp")["nickname"] == "bob"


def test_test_login_cookie_logs_in_without_a_form(standin: GitLabStandin) -> None:
    with httpx.Client() as client:
        client.get(f"{standin.url}/-/test-login", params={"user": "carol"}).raise_for_status()
        tokens = exchange(standin, authorize(client, standin))
        unknown = httpx.get(f"{standin.url}/-/test-login", params={"user": "nobody"})
    assert unknown.status_code == 404
    assert verify(standin, tokens["id_token"], "rp")["groups_direct"] == ["platform-admins"]


def test_login_helper_follows_a_relying_partys_redirect(standin: GitLabStandin) -> None:
    start = httpx.URL(f"{standin.url}/oauth/authorize").copy_merge_params(
        {"client_id": "rp", "redirect_uri": REDIRECT, "response_type": "code", "scope": "openid"}
    )
    # The redirect target does not listen: the helper gets as far as the relying party.
    with httpx.Client() as client, pytest.raises(httpx.ConnectError):
        login(client, standin, "alice", str(start))


def test_public_ssh_keys_route(standin: GitLabStandin) -> None:
    keys = httpx.get(f"{standin.url}/alice.keys")
    assert keys.status_code == 200
    assert keys.text == "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey alice@laptop\n"
    assert httpx.get(f"{standin.url}/bob.keys").text == ""
    assert httpx.get(f"{standin.url}/nobody.keys").status_code == 404


def test_ci_token_has_gitlab_claims_and_needs_the_admin_token(standin: GitLabStandin) -> None:
    token = standin.mint_ci_token("alice", "team-a/proj", "https://mlflow.test", job_id=42)
    claims = verify(standin, token, "https://mlflow.test")
    assert claims["project_path"] == "team-a/proj"
    assert claims["namespace_path"] == "team-a"
    assert claims["user_login"] == "alice"
    assert claims["user_email"] == "alice@example.test"
    assert claims["job_id"] == "42"
    assert claims["sub"] == "project_path:team-a/proj:ref_type:branch:ref:main"
    assert isinstance(claims["runner_id"], int)
    with pytest.raises(jwt.InvalidAudienceError):
        verify(standin, token, "https://bridge.test")
    refused = httpx.post(
        f"{standin.url}/-/ci-token",
        json={"user": "alice", "project_path": "a/b", "aud": "x"},
        headers={"PRIVATE-TOKEN": "glpat-wrong"},
    )
    assert refused.status_code == 401
    bad = httpx.post(
        f"{standin.url}/-/ci-token",
        json={"user": "nobody", "project_path": "a/b", "aud": "x"},
        headers={"PRIVATE-TOKEN": standin.admin_token},
    )
    assert bad.status_code == 400


def test_groups_api_lists_every_group(standin: GitLabStandin) -> None:
    answer = httpx.get(
        f"{standin.url}/api/v4/groups", headers={"PRIVATE-TOKEN": standin.admin_token}
    )
    paths = {group["full_path"]: group for group in answer.json()}
    assert set(paths) >= {"team-a", "team-a/vision", "team-b", "platform-admins"}
    assert paths["team-a/vision"]["parent_id"] == paths["team-a"]["id"]
    assert httpx.get(f"{standin.url}/api/v4/groups").status_code == 401


def test_factory_fixture_starts_and_stops(identity_standin: StandinFactory) -> None:
    server = identity_standin(standin_config([]))
    assert httpx.get(f"{server.url}/-/health").text == "GitLab OK"
