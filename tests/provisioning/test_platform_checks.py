"""The platform role's host checks, run for real by ansible-playbook on the controller with the
mount facts a host could report, and the order of the checks within the role."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures.provisioning import REPO, ansible_playbook

PLAYBOOK = """\
- name: Find the data directory's file system
  hosts: localhost
  gather_facts: false
  connection: local
  tasks:
    - name: The role's lookup
      ansible.builtin.import_role:
        name: platform
        tasks_from: data_mount
    - name: Show it
      ansible.builtin.debug:
        msg: "MOUNT={{ __platform_data_mount.mount }}"
"""


def data_mount(tmp: Path, data_dir: str, mounts: list[str]) -> subprocess.CompletedProcess[str]:
    (tmp / "play.yml").write_text(PLAYBOOK)
    facts = [{"mount": m, "device": "/dev/x", "size_available": 1 << 40} for m in mounts]
    extra = {
        "platform_data_dir": data_dir,
        "__platform_mounts": facts,
        "ansible_python_interpreter": sys.executable,
    }
    return ansible_playbook("localhost,", tmp / "play.yml", extra)


@pytest.mark.parametrize(
    ("data_dir", "mounts", "found"),
    [
        # A container's facts: no `/`, only bind mounts; the data disk is the nearest ancestor.
        ("/data/platform/store", ["/etc/hosts", "/data"], "/data"),
        ("/srv/platform", ["/", "/srv", "/srv/platform2"], "/srv"),
        ("/srv/platform", ["/", "/boot"], "/"),
        ("/srv/platform", ["/srv/platform", "/srv", "/"], "/srv/platform"),
    ],
)
def test_the_longest_mount_point_above_the_data_directory_is_chosen(
    tmp_path: Path, data_dir: str, mounts: list[str], found: str
) -> None:
    done = data_mount(tmp_path, data_dir, mounts)
    assert done.returncode == 0, done.stdout[-3000:]
    assert f"MOUNT={found}" in done.stdout


def test_no_mount_point_above_the_data_directory_is_a_clear_error(tmp_path: Path) -> None:
    done = data_mount(tmp_path, "/srv/platform", ["/etc/hosts", "/data"])
    assert done.returncode != 0
    assert "No mount point of localhost holds platform_data_dir (/srv/platform)" in done.stdout
    assert "/etc/hosts, /data" in done.stdout


def test_the_clock_is_checked_after_the_packages_that_install_timesyncd() -> None:
    tasks = yaml.safe_load((REPO / "ansible/roles/platform/tasks/main.yml").read_text())
    names = [task["name"] for task in tasks]
    packages = names.index("Install base packages")
    clock = next(
        i for i, task in enumerate(tasks) if task.get("ansible.builtin.import_tasks") == "clock.yml"
    )
    assert clock > packages
    checks = yaml.safe_load((REPO / "ansible/roles/platform/tasks/checks.yml").read_text())
    assert not any("timedatectl" in json.dumps(task) for task in checks)
    assert "platform_require_time_sync" in tasks[clock]["when"]
    defaults = yaml.safe_load((REPO / "ansible/roles/platform/defaults/main/main.yml").read_text())
    assert "systemd-timesyncd" in defaults["platform_base_packages"]
    # community.docker's modules import requests on the target.
    assert "python3-requests" in defaults["platform_base_packages"]
