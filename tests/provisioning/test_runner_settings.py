"""The runner_host role's GitLab API calls (create_runners.yml), run for real by ansible-playbook
against the GitLab API contract fake on loopback: runners are created once, and a changed
inventory (tags, run_untagged, timeout, access level) reaches the existing runners through
`PUT /runners/:id`, only when they differ."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.bridge.gitlab_fake import TOKEN, GitLabFake
from tests.fixtures.provisioning import ansible_playbook

PLAYBOOK = """\
- name: Create and update this host's runners
  hosts: runner_hosts
  gather_facts: false
  tasks:
    - name: Runner API calls of the runner_host role
      ansible.builtin.import_role:
        name: runner_host
        tasks_from: create_runners
"""


@pytest.fixture
def gitlab_api() -> Iterator[GitLabFake]:
    fake = GitLabFake()
    fake.start()
    yield fake
    fake.stop()


def converge(tmp: Path, fake: GitLabFake, **settings: object) -> subprocess.CompletedProcess[str]:
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = {
        "all": {
            "children": {
                "service_hosts": {"hosts": {"svc": local}},
                "runner_hosts": {"hosts": {"run-01": local}},
            }
        }
    }
    (tmp / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp / "play.yml").write_text(PLAYBOOK)
    secrets = tmp / "secrets"
    (secrets / "gitlab").mkdir(parents=True, exist_ok=True)
    (secrets / "gitlab/admin_token").write_text(TOKEN + "\n")
    extra = {
        "platform_secrets_dir": str(secrets),
        "platform_no_log": False,
        "__gitlab_api": f"{fake.url}/api/v4",
        "__runner_host_gpus": 0,
        "__platform_cpus": 8,
        "__platform_memory_mb": 16384,
        **settings,
    }
    return ansible_playbook(tmp / "hosts.yml", tmp / "play.yml", extra)


def recap_changed(log: str) -> int:
    line = next(line for line in log.splitlines() if line.startswith("run-01"))
    return int(line.split("changed=")[1].split()[0])


def classes(*tags: str) -> list[dict[str, object]]:
    return [{"name": "standard", "tags": list(tags), "cpus": 2, "memory_mb": 4096}]


def test_changed_runner_settings_reach_gitlab_and_a_rerun_changes_nothing(
    tmp_path: Path, gitlab_api: GitLabFake
) -> None:
    first = converge(tmp_path, gitlab_api, runner_host_classes=classes("docker"))
    assert first.returncode == 0, first.stdout[-4000:]
    (runner,) = gitlab_api.runners.values()
    assert runner.tags == ["docker"]
    assert runner.run_untagged is True
    assert runner.maximum_timeout == 86400
    token = json.loads((tmp_path / "secrets/runners/run-01/run-01-standard.json").read_text())
    assert token["id"] == runner.id
    assert token["token"].startswith("glrt-")

    calls = len(gitlab_api.calls)
    again = converge(tmp_path, gitlab_api, runner_host_classes=classes("docker"))
    assert again.returncode == 0, again.stdout[-4000:]
    assert recap_changed(again.stdout) == 0
    assert [m for m, _ in gitlab_api.calls[calls:]] == ["GET"]

    changed = converge(
        tmp_path,
        gitlab_api,
        runner_host_classes=classes("docker", "large"),
        runner_host_run_untagged=False,
        runner_host_maximum_timeout=3600,
        runner_host_access_level="ref_protected",
    )
    assert changed.returncode == 0, changed.stdout[-4000:]
    assert list(gitlab_api.runners) == [runner.id]  # updated, never re-created
    assert sorted(runner.tags) == ["docker", "large"]
    assert runner.run_untagged is False
    assert runner.maximum_timeout == 3600
    assert runner.access_level == "ref_protected"
    assert ("PUT", f"/api/v4/runners/{runner.id}") in gitlab_api.calls
    # The token that only creation shows is kept.
    kept = json.loads((tmp_path / "secrets/runners/run-01/run-01-standard.json").read_text())
    assert kept == token


def test_the_fake_refuses_an_update_without_attributes(gitlab_api: GitLabFake) -> None:
    headers = {"PRIVATE-TOKEN": TOKEN}
    api = f"{gitlab_api.url}/api/v4"
    created = httpx.post(
        f"{api}/user/runners", json={"runner_type": "instance_type"}, headers=headers
    )
    assert created.status_code == 201
    assert created.json()["token"].startswith("glrt-")
    empty = httpx.put(f"{api}/runners/{created.json()['id']}", json={}, headers=headers)
    assert empty.status_code == 400
    assert "at least one parameter must be provided" in empty.json()["error"]
    wrong = httpx.put(
        f"{api}/runners/{created.json()['id']}", json={"access_level": "x"}, headers=headers
    )
    assert wrong.status_code == 400
