"""Hostile input on the datasets, analyses and pages routes: a clear 4xx, never a 5xx."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.api.app import create_app
from bridge.settings import Settings
from tests.bridge.gitlab_fake import TOKEN, GitLabFake
from tests.fixtures.bridge import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
DIGESTS = st.sampled_from([hashlib.sha256(b"x").hexdigest(), "0" * 64, "zz", ""])
FILES = st.lists(
    st.fixed_dictionaries(
        {
            "path": st.text(max_size=30) | JSON,
            "size": st.integers() | JSON,
            "sha256": DIGESTS | JSON,
        }
    ),
    max_size=3,
)
DATASET_BODIES = JSON | st.fixed_dictionaries(
    {"files": FILES}, optional={"group": st.text(max_size=20) | JSON, "metadata": JSON}
)
ANALYSIS_BODIES = JSON | st.fixed_dictionaries(
    {"dataset": DIGESTS | JSON},
    optional={
        "analysis": st.sampled_from(["lab/qc@main", "lab/qc@x", "a@b", "../x@y"]) | st.text(),
        "variables": st.dictionaries(st.text(max_size=10), st.text(max_size=10) | JSON),
        "force": JSON,
    },
)
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def hostile_api(datasets_env: dict[str, str], gitlab: GitLabFake) -> Iterator[TestClient]:
    gitlab.add_project("lab/qc")
    env = {**datasets_env, "BRIDGE_GITLAB_URL": gitlab.url, "BRIDGE_GITLAB_TOKEN": TOKEN}
    with TestClient(create_app(Settings.from_env(env)), base_url="https://testserver") as client:
        # The pool opens its connection in the background, drawing its expiry jitter from the
        # global `random`; Hypothesis refuses a test during which that state moves, so the
        # connection is made before the first example.
        client.app.state.bridge.db.pool.wait(timeout=60)
        yield client


@SETTINGS
@given(body=DATASET_BODIES)
def test_registering_arbitrary_json_never_5xx(hostile_api: TestClient, body: object) -> None:
    response = hostile_api.post(
        "/api/v1/datasets",
        content=json.dumps(body),
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert response.status_code < 500, response.text


@SETTINGS
@given(body=ANALYSIS_BODIES)
def test_submitting_arbitrary_json_never_5xx(hostile_api: TestClient, body: object) -> None:
    response = hostile_api.post(
        "/api/v1/analyses",
        content=json.dumps(body),
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert response.status_code < 500, response.text


@SETTINGS
@given(where=st.lists(st.text(max_size=60), max_size=4), after=st.none() | st.text(max_size=80))
def test_arbitrary_conditions_and_cursors_never_5xx(
    hostile_api: TestClient, where: list[str], after: str | None
) -> None:
    params: dict[str, object] = {"where": where}
    if after is not None:
        params["after"] = after
    response = hostile_api.get("/api/v1/datasets", params=params, headers=ADMIN)
    assert response.status_code < 500, response.text


def test_the_pages_filter_reports_a_bad_condition_in_the_page(hostile_api: TestClient) -> None:
    login = hostile_api.post("/ui/login", data={"token": ADMIN_TOKEN}, follow_redirects=False)
    cookie = login.headers["set-cookie"].lower()

    page = hostile_api.get("/ui/datasets", params={"where": "=broken\n\x00?"})

    assert login.status_code == 303
    assert all(flag in cookie for flag in ("secure", "httponly", "samesite=strict"))
    assert page.status_code == 200
    assert "cannot read condition" in page.text


def test_a_forged_or_missing_session_goes_to_the_login_form(hostile_api: TestClient) -> None:
    hostile_api.cookies.set("bridge_session", "forged.value.here", domain="testserver", path="/ui")

    response = hostile_api.get("/ui/datasets", follow_redirects=False)
    wrong = hostile_api.post("/ui/login", data={"token": "bct_wrong"}, follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login"
    assert wrong.status_code == 401
    assert "unknown token" in wrong.text
