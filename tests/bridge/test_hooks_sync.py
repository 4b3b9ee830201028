"""`bridge hooks sync` and `project_create` against the GitLab contract fake."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient

from bridge.cli import main
from local.ports import free_port
from tests.bridge.gitlab_fake import TOKEN, GitLabFake, Project
from tests.bridge.helpers import hook_headers
from tests.fixtures.bridge import WEBHOOK_TOKEN

BRIDGE_HOOK = "https://bridge.example.com/hooks/gitlab"
SIGNING_KEY = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WANTED = {
    "job_events": True,
    "pipeline_events": True,
    "push_events": False,
    "enable_ssl_verification": True,
    "token": WEBHOOK_TOKEN,
}


@pytest.fixture
def bridge_env(bridge_env: dict[str, str], gitlab: GitLabFake) -> dict[str, str]:
    return {**bridge_env, "BRIDGE_GITLAB_URL": gitlab.url, "BRIDGE_GITLAB_TOKEN": TOKEN}


def sync(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, ["hooks", "sync", "--retries", "1", *args], env=env)


def bridge_hooks(project: Project) -> list[dict[str, Any]]:
    return [h for h in project.hooks.values() if h["url"] == BRIDGE_HOOK]


def test_sync_creates_fixes_leaves_others_alone_and_is_idempotent(
    gitlab: GitLabFake, bridge_env: dict[str, str]
) -> None:
    bare = gitlab.add_project("acme-vision/bare")
    foreign = gitlab.add_project("acme-vision/foreign")
    theirs = gitlab.add_hook(
        foreign,
        url="https://ci.example.org/hook",
        token="their-secret",
        job_events=True,
        enable_ssl_verification=False,
    )
    wrong = gitlab.add_project("acme-nlp/wrong")
    # Created by hand: push events on (GitLab's default), no job events, no token, no TLS check.
    gitlab.add_hook(wrong, url=BRIDGE_HOOK, pipeline_events=True, enable_ssl_verification=False)
    right = gitlab.add_project("beta-lab/right")
    gitlab.add_hook(right, url=BRIDGE_HOOK, **WANTED)
    doubled = gitlab.add_project("beta-lab/doubled")
    kept = gitlab.add_hook(doubled, url=BRIDGE_HOOK, **WANTED)
    gitlab.add_hook(doubled, url=BRIDGE_HOOK, **WANTED)
    disabled = gitlab.add_project("gamma/disabled")
    gitlab.add_hook(disabled, url=BRIDGE_HOOK, **WANTED)
    next(iter(disabled.hooks.values())).update(
        alert_status="temporarily_disabled", disabled_until="2026-11-23T00:00:00.000Z"
    )
    foreign_before = copy.deepcopy(foreign.hooks)

    first = sync(bridge_env)
    assert first.exit_code == 0, first.output
    assert first.stdout == (
        "hooks sync: 6 projects: 2 created, 2 fixed, 2 unchanged, 1 duplicates deleted\n"
    )
    for project in gitlab.projects.values():
        [hook] = bridge_hooks(project)
        assert {k: hook[k] for k in WANTED} == WANTED, project.path
        assert hook["alert_status"] == "executable"
    assert [h["id"] for h in bridge_hooks(doubled)] == [kept["id"]]
    others = {i: h for i, h in foreign.hooks.items() if h["url"] != BRIDGE_HOOK}
    assert others == foreign_before, "a hook to another URL is never touched"
    assert theirs["id"] in others
    assert ("POST", f"/api/v4/projects/{bare.id}/hooks") in gitlab.writes()

    gitlab.calls.clear()
    second = sync(bridge_env)
    assert second.exit_code == 0, second.output
    assert second.stdout == (
        "hooks sync: 6 projects: 0 created, 0 fixed, 6 unchanged, 0 duplicates deleted\n"
    )
    assert gitlab.writes() == []


def test_signing_token_and_token_rotation(gitlab: GitLabFake, bridge_env: dict[str, str]) -> None:
    project = gitlab.add_project("acme-vision/segmentation")
    gitlab.add_hook(project, url=BRIDGE_HOOK, **WANTED)
    signed = {**bridge_env, "BRIDGE_WEBHOOK_SIGNING_KEY": SIGNING_KEY}
    assert sync(signed).stdout.startswith("hooks sync: 1 projects: 0 created, 1 fixed")
    [hook] = bridge_hooks(project)
    assert hook["signing_token"] == SIGNING_KEY

    # GitLab never shows a token, so a new one is only set when asked for.
    rotated = {**signed, "BRIDGE_WEBHOOK_TOKEN": "a-new-webhook-token"}
    assert sync(rotated).stdout.startswith("hooks sync: 1 projects: 0 created, 0 fixed")
    assert sync(rotated, "--reset-tokens").stdout.startswith(
        "hooks sync: 1 projects: 0 created, 1 fixed"
    )
    assert bridge_hooks(project)[0]["token"] == "a-new-webhook-token"


def test_gitlab_unreachable_or_refusing_is_one_line(
    gitlab: GitLabFake, bridge_env: dict[str, str]
) -> None:
    down = sync({**bridge_env, "BRIDGE_GITLAB_URL": f"http://127.0.0.1:{free_port()}"})
    assert down.exit_code == 1
    assert down.output.startswith("Error: GitLab at http://127.0.0.1:")
    assert len(down.output.strip().splitlines()) == 1

    gitlab.add_project("acme-vision/segmentation")
    missing = sync({**bridge_env, "BRIDGE_PUBLIC_URL": ""})
    assert missing.exit_code == 1
    assert missing.output.startswith("Error: missing configuration: BRIDGE_PUBLIC_URL")

    gitlab.fail(403, times=1, path=r"/hooks")
    refused = sync(bridge_env)
    assert refused.exit_code == 1
    assert "1 failed: acme-vision/segmentation: GitLab refused GET /projects/" in refused.output


def test_project_create_system_hook_adds_the_hook_in_the_background(
    gitlab: GitLabFake, api: TestClient
) -> None:
    project = gitlab.add_project("acme-vision/brand-new")
    gitlab.delay = 0.5  # GitLab's API is slow: the delivery must not wait for it
    event = {
        "created_at": "2026-11-22T07:30:54Z",
        "updated_at": "2026-11-22T07:30:54Z",
        "event_name": "project_create",
        "name": "brand-new",
        "owner_email": "ada@example.com",
        "owner_name": "Ada Scientist",
        "owners": [{"name": "Ada", "email": "ada@example.com"}],
        "path": "brand-new",
        "path_with_namespace": project.path,
        "project_id": project.id,
        "project_namespace_id": 23,
        "project_visibility": "private",
    }
    started = time.monotonic()
    response = api.post("/hooks/gitlab", content=json.dumps(event), headers=hook_headers(event))
    assert (response.status_code, response.json()) == (200, {"result": "ignored"})
    assert time.monotonic() - started < gitlab.delay
    deadline = time.monotonic() + 10
    while not bridge_hooks(project):
        assert time.monotonic() < deadline, "no hook within 10 s"
        time.sleep(0.05)
    [hook] = bridge_hooks(project)
    assert {k: hook[k] for k in WANTED} == WANTED
