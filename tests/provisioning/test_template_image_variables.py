"""The instance CI/CD variables that name the pipeline templates' images (role gitlab,
tasks/ci_image_variables.yml): what the deploy sets, from an image lock read from a registry,
and where the rendered runners allow those images to run.

The tasks run for svc-01 of the example inventory on the controller, as in `make render`; the
variables and the runners' `allowed_images` (the expression config.toml.j2 writes) are written
to a file and compared with the lock.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.fixtures.provisioning import ANSIBLE, REPO, ansible_playbook
from tests.fixtures.registry import ImageLock
from tests.templates.test_builder_image import allows

PLAYBOOK = f"""\
- name: Instance CI/CD variables of the pipeline templates' images
  hosts: svc-01
  gather_facts: false
  vars_files:
    - {ANSIBLE}/playbooks/group_vars/all/internal.yml
  tasks:
    # Imported, never run: their defaults (below the inventory's values) are what the role reads.
    - name: Defaults of the platform
      ansible.builtin.import_role:
        name: platform
      when: false
    - name: Defaults of the runners
      ansible.builtin.import_role:
        name: runner_host
      when: false
    - name: Check the GitLab settings
      ansible.builtin.import_role:
        name: gitlab
        tasks_from: validate
    - name: Name the images
      ansible.builtin.import_role:
        name: gitlab
        tasks_from: ci_image_variables
    - name: Write what the deploy would set, and what the runners allow
      ansible.builtin.copy:
        content: >-
          {{{{ {{'variables': __gitlab_image_variables,
                'allowed_images': runner_host_allowed_images + __runner_host_mirror_allowed}}
               | to_json }}}}
        dest: "{{{{ out }}}}"
        mode: "0600"
"""
PYTHON_ML = "registry.ml.example.org/platform/environments/python-ml"
TEMPLATE_IMAGES = {
    "PLATFORM_BUILDKIT_IMAGE": "buildkit",
    "PLATFORM_RELEASE_CLI_IMAGE": "release_cli",
}


def run(tmp_path: Path, lock: Path, **extra: str) -> tuple[subprocess.CompletedProcess, dict]:
    playbook = tmp_path / "image-variables.yml"
    playbook.write_text(PLAYBOOK)
    out = tmp_path / "out.json"
    out.unlink(missing_ok=True)
    settings = {
        "platform_repo_root": str(REPO),
        "platform_images_lock": str(lock),
        "out": str(out),
        **extra,
    }
    local = {
        "ansible_connection": "local",
        "ansible_become": "false",
        "ansible_python_interpreter": f"{REPO}/.venv/bin/python",
    }
    done = ansible_playbook("inventories/example", playbook, {**settings, **local})
    return done, (json.loads(out.read_text()) if out.exists() else {})


def unset_message(done: subprocess.CompletedProcess) -> str:
    """The deploy's message naming the variables it left unset (the callback may wrap it)."""
    text = " ".join(done.stdout.split())
    assert text.count("variables left unset") == 1, done.stdout[-3000:]
    start = text.index("variables left unset")
    return text[start : text.find("PLAY RECAP", start)]


def locked(lock: Path, name: str) -> str:
    return yaml.safe_load(lock.read_text())["images"][name]["digest"]


def test_template_images_come_from_the_lock_and_python_ml_from_the_operator(
    image_lock: ImageLock, tmp_path: Path
) -> None:
    python_ml = f"{PYTHON_ML}@{image_lock.pushed['python_ml_base']}"  # a digest a registry served

    done, facts = run(tmp_path, image_lock.path, gitlab_python_ml_image=python_ml)

    assert done.returncode == 0, done.stdout[-3000:]
    variables = {v["key"]: v["value"] for v in facts["variables"]}
    assert variables == {
        "PLATFORM_BUILDKIT_IMAGE": f"moby/buildkit@{locked(image_lock.path, 'buildkit')}",
        "PLATFORM_RELEASE_CLI_IMAGE": (
            f"registry.gitlab.com/gitlab-org/release-cli@{locked(image_lock.path, 'release_cli')}"
        ),
        "PLATFORM_PYTHON_ML_IMAGE": python_ml,
    }
    assert locked(image_lock.path, "buildkit") == image_lock.pushed["buildkit"]
    assert not any(v["masked"] for v in facts["variables"])
    assert "left unset" not in done.stdout
    # Without a site mirror the platform's runners pull only from the platform registry:
    # python-ml runs there, the upstream builder does not (README: set platform_registry_mirror).
    allowed = facts["allowed_images"]
    assert any(allows(pattern, python_ml) for pattern in allowed)
    assert not any(allows(p, variables["PLATFORM_BUILDKIT_IMAGE"]) for p in allowed)


def test_with_a_site_mirror_the_runners_allow_every_template_image(
    image_lock: ImageLock, tmp_path: Path
) -> None:
    done, facts = run(tmp_path, image_lock.path, platform_registry_mirror="registry.lab:5000")

    assert done.returncode == 0, done.stdout[-3000:]
    variables = {v["key"]: v["value"] for v in facts["variables"]}
    assert set(variables) == set(TEMPLATE_IMAGES)
    for key, name in TEMPLATE_IMAGES.items():
        assert variables[key].startswith("registry.lab:5000/")
        assert variables[key].endswith(f"@{locked(image_lock.path, name)}")
        assert any(allows(p, variables[key]) for p in facts["allowed_images"]), key
    # No python-ml given: its variable stays unset, and the deploy says so in one line.
    said = unset_message(done)
    assert "unset: PLATFORM_PYTHON_ML_IMAGE." in said
    assert "gitlab_python_ml_image" in said


def test_an_unresolved_lock_leaves_the_lock_variables_unset(tmp_path: Path) -> None:
    # The committed lock: no digest has been read from a registry yet.
    done, facts = run(tmp_path, ANSIBLE / "images.lock.yml")

    assert done.returncode == 0, done.stdout[-3000:]
    assert facts["variables"] == []
    said = unset_message(done)
    assert all(key in said for key in [*TEMPLATE_IMAGES, "PLATFORM_PYTHON_ML_IMAGE"])
    assert "make images-lock" in said


@pytest.mark.parametrize(
    "value",
    [f"{PYTHON_ML}:latest", f"{PYTHON_ML}@sha256:abc", f"{PYTHON_ML}@sha256:{'a' * 64}\n; id"],
    ids=["tag", "short digest", "trailing text"],
)
def test_a_python_ml_image_not_by_digest_is_refused(
    image_lock: ImageLock, tmp_path: Path, value: str
) -> None:
    done, facts = run(tmp_path, image_lock.path, gitlab_python_ml_image=value)

    assert done.returncode != 0
    assert "gitlab_python_ml_image must be the python-ml image by digest" in done.stdout
    assert facts == {}, "refused before anything was named"
