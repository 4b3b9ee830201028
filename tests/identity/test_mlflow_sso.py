"""MLflow behind GitLab login: group gate, admins by group, team isolation for every credential.

Real MLflow with mlflow-oidc-auth (Postgres backend and auth database, S3 artifacts) logging in
through the GitLab stand-in (a real OpenID provider with GitLab's paths and claims).
"""

from __future__ import annotations

import base64
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.identity.conftest import API, GroupSync, MlflowSso

SPOOFED_IDENTITY_HEADERS = (
    "X-Forwarded-User",
    "X-Forwarded-Email",
    "X-Forwarded-Preferred-Username",
    "X-Auth-Request-User",
    "X-Auth-Request-Email",
    "X-Auth-Request-Groups",
    "Remote-User",
    "X-Remote-User",
)


def basic(user: str, token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def experiment_names(answer: httpx.Response) -> set[str]:
    assert answer.status_code == 200, answer.text
    return {e["name"] for e in answer.json().get("experiments", [])}


def assert_sees_only_its_team(answer: httpx.Response, experiment: str) -> None:
    """The search shows `experiment` and nothing outside its team (other modules of the
    session may have added experiments to the same team)."""
    names = experiment_names(answer)
    assert experiment in names, names
    assert {name.split("/", 1)[0] for name in names} == {experiment.split("/", 1)[0]}, names


@pytest.fixture(scope="module")
def teams(mlflow_sso: MlflowSso, group_sync: GroupSync) -> MlflowSso:
    """The group sync granted every GitLab group its experiments; team-a and team-b each hold
    one experiment, created by a member through the UI session."""
    assert "granted ^team-a/.* to group team-a" in group_sync.first_run.stdout
    assert "granted ^team-b/.* to group team-b" in group_sync.first_run.stdout
    for user, name in (("alice", "team-a/churn"), ("bob", "team-b/vision")):
        with mlflow_sso.session(user) as session:
            answer = session.post(f"{mlflow_sso.url}{API}/experiments/create", json={"name": name})
            assert answer.status_code == 200, answer.text
    return mlflow_sso


def search(client: httpx.Client | None, mlflow: MlflowSso, **kwargs) -> httpx.Response:
    body = {"max_results": 100}
    if client is None:
        return httpx.post(f"{mlflow.url}{API}/experiments/search", json=body, **kwargs)
    return client.post(f"{mlflow.url}{API}/experiments/search", json=body, **kwargs)


def test_login_is_limited_to_allowed_groups(mlflow_sso: MlflowSso) -> None:
    with mlflow_sso.session("alice") as alice:
        assert alice.get(f"{mlflow_sso.url}/auth/status").json()["authenticated"] is True
        assert mlflow_sso.username(alice) == "alice@example.test"
    with mlflow_sso.session("mallory") as mallory:
        status = mallory.get(f"{mlflow_sso.url}/auth/status")
        assert status.status_code == 401 or status.json().get("authenticated") is not True
        assert search(mallory, mlflow_sso).status_code == 401


def test_admins_come_from_the_admin_group(teams: MlflowSso) -> None:
    path = f"{teams.url}{API}/permissions/groups/team-b/experiment-patterns"
    with teams.session("carol") as carol:
        assert carol.get(path).status_code == 200
    with teams.session("alice") as alice:
        assert alice.get(path).status_code == 403
        grant = {"regex": "^team-b/.*", "priority": 1, "permission": "MANAGE"}
        assert alice.post(path, json=grant).status_code == 403


def test_client_sent_identity_headers_are_ignored(teams: MlflowSso) -> None:
    spoofed = dict.fromkeys(SPOOFED_IDENTITY_HEADERS, "carol@example.test")
    assert search(None, teams, headers=spoofed).status_code == 401
    with teams.session("alice") as alice:
        assert_sees_only_its_team(search(alice, teams, headers=spoofed), "team-a/churn")
        status = alice.get(f"{teams.url}/auth/status", headers=spoofed).json()
        assert status["username"] == "alice@example.test"


def test_a_member_sees_only_her_groups_experiments_in_the_ui(teams: MlflowSso) -> None:
    with teams.session("alice") as alice:
        assert_sees_only_its_team(search(alice, teams), "team-a/churn")
        other = alice.get(
            f"{teams.url}{API}/experiments/get-by-name", params={"experiment_name": "team-b/vision"}
        )
        assert other.status_code == 403
        refused = alice.post(f"{teams.url}{API}/experiments/create", json={"name": "team-b/x"})
        assert refused.status_code == 403
        # Outside every group's namespace nobody may create.
        assert (
            alice.post(f"{teams.url}{API}/experiments/create", json={"name": "loose"}).status_code
            == 403
        )
    with teams.session("bob") as bob:
        assert_sees_only_its_team(search(bob, teams), "team-b/vision")


def test_a_personal_access_token_sees_only_her_groups_experiments(teams: MlflowSso) -> None:
    with teams.session("alice") as alice:
        token = teams.access_token(alice)
        username = teams.username(alice)
    assert_sees_only_its_team(search(None, teams, headers=basic(username, token)), "team-a/churn")
    assert search(None, teams, headers=basic(username, token + "x")).status_code == 401


def test_a_ci_id_token_acts_as_the_user_who_started_the_job(teams: MlflowSso) -> None:
    token = teams.ci_token("alice", "team-a/churn-model")
    headers = bearer(token)
    assert_sees_only_its_team(search(None, teams, headers=headers), "team-a/churn")
    created = httpx.post(
        f"{teams.url}{API}/experiments/create", json={"name": "team-a/churn-model"}, headers=headers
    )
    assert created.status_code == 200, created.text
    refused = httpx.post(
        f"{teams.url}{API}/experiments/create", json={"name": "team-b/ci"}, headers=headers
    )
    assert refused.status_code == 403


def test_an_id_token_for_another_audience_is_refused(teams: MlflowSso) -> None:
    token = teams.ci_token("alice", "team-a/churn-model", audience="https://bridge.example.test")
    assert search(None, teams, headers=bearer(token)).status_code == 401


def test_an_id_token_of_a_user_unknown_to_mlflow_is_refused(teams: MlflowSso) -> None:
    # mallory exists in GitLab but never passed MLflow's group gate: no account, no access.
    token = teams.ci_token("mallory", "outsiders/tool")
    assert search(None, teams, headers=bearer(token)).status_code == 401


def test_a_token_signed_by_another_key_is_refused(teams: MlflowSso) -> None:
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    genuine = jwt.decode(
        teams.ci_token("alice", "team-a/churn-model"), options={"verify_signature": False}
    )
    header = jwt.get_unverified_header(teams.ci_token("alice", "team-a/churn-model"))
    forged = jwt.encode(
        {**genuine, "exp": int(time.time()) + 300},
        forger,
        algorithm="RS256",
        headers={"kid": header["kid"]},
    )
    assert search(None, teams, headers=bearer(forged)).status_code == 401


def test_the_group_sync_is_idempotent_and_fails_clearly(
    teams: MlflowSso, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with teams.session("carol") as admin:
        token = teams.access_token(admin)
        username = teams.username(admin)
    work = tmp_path_factory.mktemp("sync-again")
    again = teams.sync_groups(username, token, work)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "mlflow-group-sync: 0 new grant(s)"
    patterns = httpx.get(
        f"{teams.url}{API}/permissions/groups/team-a%2Fvision/experiment-patterns",
        headers=basic(username, token),
    ).json()
    assert [(p["regex"], p["permission"]) for p in patterns] == [("^team-a/vision/.*", "EDIT")]
    # A non-admin's token cannot grant anything: one line, non-zero exit.
    with teams.session("alice") as alice:
        alice_token = teams.access_token(alice)
    refused = teams.sync_groups("alice@example.test", alice_token, work)
    assert refused.returncode == 1
    assert refused.stderr.startswith("mlflow-group-sync: POST ")
    assert "HTTP 403" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
