"""One converge-test site: hosts, their mirrors, a generated inventory, and real `make` runs.

The inventory is a copy of a shipped one (ansible/inventories/<name>) changed only through
operator options the docs describe: how Ansible reaches each host (ansible_host and a
ProxyCommand, as for hosts behind a bastion), the site's own domain and service address,
the registry mirror and image lock, Debian's own Docker packages from the site's apt mirror,
GitLab Runner's apt mirror and key, and the clock check (timesyncd cannot run in a container).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tests.deploy.hosts import Host, Site
from tests.deploy.stand_ins import DEV_IMAGE

REPO = Path(__file__).resolve().parents[2]
APT_PORT = 8080
GITLAB_RUNNER_PATH = "gitlab-runner"
REGISTRY_PORT = 5000
RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE
)
DOMAIN = "converge.test"


@dataclass
class Run:
    """One `make` run: exit code, output, and its PLAY RECAP by host."""

    returncode: int
    output: str
    seconds: float
    recap: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def parse(cls, returncode: int, output: str, seconds: float) -> Run:
        recap = {
            m[1]: {
                "ok": int(m[2]),
                "changed": int(m[3]),
                "unreachable": int(m[4]),
                "failed": int(m[5]),
            }
            for m in RECAP.finditer(output)
        }
        return cls(returncode, output, seconds, recap)

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output.splitlines()[-lines:])

    def changed_tasks(self) -> list[str]:
        """`TASK [...]` headers followed by a `changed:` line (what a rerun still changed)."""
        found, task = [], ""
        for line in self.output.splitlines():
            if line.startswith("TASK ["):
                task = line
            elif line.startswith("changed:") and task not in found:
                found.append(task)
        return found


class Deployment:
    def __init__(
        self,
        inventory: str,
        workdir: Path,
        image: str,
        apt_repo: Path,
        apt_key_fingerprint: str,
        registry_data: Path,
        lock: Path,
        dev_digest: str,
    ) -> None:
        self.inventory_name = inventory
        self.workdir = workdir
        self.apt_repo = apt_repo
        self.apt_fingerprint = apt_key_fingerprint
        self.registry_data = registry_data
        self.lock = lock
        self.dev_digest = dev_digest
        self.site = Site(image, workdir)
        self.inventory = workdir / "inventory"
        self.secrets = workdir / "secrets"
        self.key = workdir / "id_ed25519"
        self.shipped = yaml.safe_load(
            (REPO / "ansible/inventories" / inventory / "hosts.yml").read_text()
        )

    def host_names(self) -> list[str]:
        names: list[str] = []
        for group in self.shipped["all"]["children"].values():
            names += [n for n in group["hosts"] if n not in names]
        return names

    def start(self) -> None:
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True
        )
        public = (self.workdir / "id_ed25519.pub").read_text().strip()
        key = (self.apt_repo / "gpgkey").read_text()
        served = self._apt_tree()
        registry_config = self.workdir / "registry.yml"
        registry_config.write_text(
            yaml.safe_dump(
                {
                    "version": 0.1,
                    "log": {"level": "warn"},
                    "storage": {"filesystem": {"rootdirectory": str(self.registry_data)}},
                    "http": {"addr": f"127.0.0.1:{REGISTRY_PORT}"},
                }
            )
        )
        for name in self.host_names():
            host = self.site.add(name, public)
            self.site.trust_mirror(host, key)
            host.spawn(
                "python3",
                "-m",
                "http.server",
                str(APT_PORT),
                "--bind",
                "127.0.0.1",
                "-d",
                str(served),
                log=self.workdir / f"{name}-apt.log",
            )
            host.spawn(
                "docker-registry",
                "serve",
                str(registry_config),
                log=self.workdir / f"{name}-registry.log",
            )
        self._write_inventory()

    def _apt_tree(self) -> Path:
        """What the apt mirror serves: the site's Debian mirror at its root and the same
        repository again under GITLAB_RUNNER_PATH, as a separate source for GitLab Runner's
        apt repository (apt refuses one URI and suite listed twice with different keys)."""
        served = self.workdir / "apt"
        served.mkdir()
        for entry in ("dists", "pool", "gpgkey"):
            (served / entry).symlink_to(self.apt_repo / entry)
        (served / GITLAB_RUNNER_PATH).symlink_to(self.apt_repo)
        return served

    def service_host(self) -> Host:
        return self.site.hosts[
            next(iter(self.shipped["all"]["children"]["service_hosts"]["hosts"]))
        ]

    def _write_inventory(self) -> None:
        shutil.copytree(REPO / "ansible/inventories" / self.inventory_name, self.inventory)
        hosts = self.shipped
        for group in hosts["all"]["children"].values():
            for name, settings in group["hosts"].items():
                if settings is None:
                    continue
                host = self.site.hosts[name]
                settings["ansible_host"] = name
                settings["ansible_ssh_private_key_file"] = str(self.key)
                settings["ansible_ssh_common_args"] = (
                    f"-o ProxyCommand='{host.proxy_command()}' "
                    "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
                )
        (self.inventory / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
        site = {
            "platform_domain": DOMAIN,
            "platform_service_address": self.service_host().address,
            # The site has no DNS server: every host and job container maps the service names.
            "platform_manage_etc_hosts": True,
            "platform_require_time_sync": False,
            # The hosts' disks are this machine's, shared by both sites and the test suite's
            # images: the production default (40 GB) would make the result depend on what
            # else the machine holds. A site's largest host used 3.3 GB.
            "platform_min_free_disk_gb": 5,
            "platform_registry_mirror": f"127.0.0.1:{REGISTRY_PORT}",
            "platform_images_lock": str(self.lock),
            "jupyterhub_dev_image": f"127.0.0.1:{REGISTRY_PORT}/{DEV_IMAGE}@{self.dev_digest}",
            "docker_engine_source": "distribution",
            "runner_host_apt_url": f"http://127.0.0.1:{APT_PORT}/{GITLAB_RUNNER_PATH}/",
            "runner_host_apt_key_url": f"http://127.0.0.1:{APT_PORT}/{GITLAB_RUNNER_PATH}/gpgkey",
            "runner_host_apt_key_fingerprint": self.apt_fingerprint,
        }
        (self.inventory / "group_vars/all/test-site.yml").write_text(
            "---\n# Written by the converge test (tests/deploy): this site's own settings.\n"
            + yaml.safe_dump(site, sort_keys=False)
        )

    def runner_hosts(self) -> list[str]:
        return list(self.shipped["all"]["children"]["runner_hosts"]["hosts"])

    def set_site_options(self, options: dict) -> None:
        """Change this site's settings (group_vars/all/test-site.yml), as an operator would."""
        path = self.inventory / "group_vars/all/test-site.yml"
        current = yaml.safe_load(path.read_text())
        path.write_text("---\n" + yaml.safe_dump({**current, **options}, sort_keys=False))

    def make(
        self, target: str, *, kill_after_change_in: str | None = None, timeout: float = 3600
    ) -> Run:
        """`make TARGET INVENTORY=... SECRETS=...`. With kill_after_change_in, SIGKILL make and the
        playbook as soon as the task of that name reports a change (an interrupted run)."""
        env = {**os.environ, "ANSIBLE_FORCE_COLOR": "0", "PYTHONUNBUFFERED": "1"}
        argv = ["make", "-s", target, f"INVENTORY={self.inventory}", f"SECRETS={self.secrets}"]
        start = time.monotonic()
        lines = []
        log = (self.workdir / f"make-{target}-{int(time.time())}.log").open("w")
        with (
            log,
            subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            ) as process,
        ):
            assert process.stdout is not None
            armed = False
            for line in process.stdout:
                lines.append(line)
                log.write(line)
                log.flush()
                if line.startswith("TASK ["):
                    armed = bool(kill_after_change_in) and kill_after_change_in in line
                elif armed and line.startswith("changed:"):
                    os.killpg(process.pid, signal.SIGKILL)
                    lines.append("converge test: SIGKILL sent here\n")
                    break
                if time.monotonic() - start > timeout:
                    os.killpg(process.pid, signal.SIGKILL)
                    lines.append(f"converge test: killed after {timeout} s\n")
                    break
            returncode = process.wait()
        output = "".join(lines)
        return Run.parse(returncode, output, time.monotonic() - start)

    def stop(self) -> None:
        self.site.stop()
