"""The deploy's OAuth applications (role identity, tasks/applications.yml) against GitLab's API
contract fake: created once with their secrets kept, nothing done on a second run, an
application whose secret file is lost replaced.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.bridge.gitlab_fake import TOKEN, GitLabFake
from tests.fixtures.provisioning import ANSIBLE, REPO, ansible_playbook

PLAYBOOK = f"""\
- name: OAuth applications of the GitLab login
  hosts: svc-01
  gather_facts: false
  vars_files:
    - {ANSIBLE}/versions.yml
    - {ANSIBLE}/playbooks/group_vars/all/internal.yml
  tasks:
    # Imported, never run: their defaults (below the inventory's values) are what the role reads.
    - name: Defaults of the platform
      ansible.builtin.import_role:
        name: platform
      when: false
    - name: Defaults of the Compose project
      ansible.builtin.import_role:
        name: service_stack
      when: false
    - name: Create the applications
      ansible.builtin.import_role:
        name: identity
        tasks_from: applications
"""
RELYING_PARTIES = {"mlflow", "jupyterhub", "minio_console", "bridge_pages"}


def run(playbook: Path, secrets: Path, dest: Path, gitlab: GitLabFake) -> str:
    extra = {
        "platform_secrets_dir": str(secrets),
        "platform_render": "true",
        "platform_render_dest": str(dest),
        "__gitlab_api": f"{gitlab.url}/api/v4",
        "ansible_connection": "local",
        "ansible_python_interpreter": f"{REPO}/.venv/bin/python",
    }
    done = ansible_playbook("inventories/example", playbook, extra)
    assert done.returncode == 0, done.stdout[-4000:]
    return done.stdout


def changed(output: str) -> list[str]:
    """The tasks that reported a change."""
    tasks, task = [], ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line.split("[", 1)[1].split("]", 1)[0]
        elif line.startswith("changed:") and task not in tasks:
            tasks.append(task)
    return tasks


@pytest.mark.timeout(1800)  # three playbook runs; slow on a loaded machine
def test_applications_are_created_once_and_replaced_when_their_secret_is_lost(
    gitlab: GitLabFake, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    shutil.copytree(REPO / "secrets.example", secrets)
    shutil.rmtree(secrets / "oauth")
    (secrets / "gitlab/admin_token").write_text(TOKEN + "\n")
    dest = tmp_path / "rendered"
    (dest / "svc-01/opt/platform/env").mkdir(parents=True)
    playbook = tmp_path / "applications.yml"
    playbook.write_text(PLAYBOOK)

    run(playbook, secrets, dest, gitlab)
    apps = {app["application_name"]: app for app in gitlab.applications.values()}
    assert set(apps) == {
        "Platform MLflow",
        "Platform JupyterHub",
        "Platform MinIO console",
        "Platform Bridge pages",
    }
    assert apps["Platform MLflow"]["callback_url"] == "https://mlflow.ml.example.org/callback"
    kept = {p.stem: json.loads(p.read_text()) for p in (secrets / "oauth").glob("*.json")}
    assert set(kept) == RELYING_PARTIES
    assert kept["mlflow"]["client_secret"] == apps["Platform MLflow"]["secret"]
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in (secrets / "oauth").iterdir())
    env = (dest / "svc-01/opt/platform/env/mlflow-oidc.env").read_text()
    assert f"OIDC_CLIENT_ID={kept['mlflow']['client_id']}\n" in env

    writes = len(gitlab.writes())
    assert changed(run(playbook, secrets, dest, gitlab)) == []
    assert len(gitlab.writes()) == writes, "a second run writes nothing to GitLab"

    (secrets / "oauth/mlflow.json").unlink()
    run(playbook, secrets, dest, gitlab)
    new = json.loads((secrets / "oauth/mlflow.json").read_text())
    assert new["id"] != kept["mlflow"]["id"]
    assert [a["application_name"] for a in gitlab.applications.values()].count(
        "Platform MLflow"
    ) == 1
    assert (
        f"OIDC_CLIENT_ID={new['client_id']}\n"
        in (dest / "svc-01/opt/platform/env/mlflow-oidc.env").read_text()
    )


def test_applications_come_after_the_gitlab_bootstrap_that_installs_their_token() -> None:
    """The applications call GitLab with the admin token; on a fresh host that token exists only
    once the GitLab bootstrap has waited for GitLab and installed it (found by the converge test:
    the first deploy failed at `List GitLab's OAuth applications`)."""
    tasks = yaml.safe_load((ANSIBLE / "playbooks/service_host.yml").read_text())[0]["tasks"]
    steps = [
        (
            t["ansible.builtin.import_role"]["name"],
            t["ansible.builtin.import_role"].get("tasks_from"),
        )
        for t in tasks
    ]
    assert steps.index(("gitlab", "bootstrap")) < steps.index(("identity", "applications"))
