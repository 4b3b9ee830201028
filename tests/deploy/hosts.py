"""Fresh Debian 12 hosts as systemd containers, each in its own network namespace.

Network (see tests/deploy/README.md): every host container starts with `--network none`, so
Docker gives it a namespace with nothing but loopback. The test then creates one more namespace,
the "LAN" (`ip netns add`), with a bridge inside it, and links each host to it with a veth pair
whose ends live only in those namespaces. Hosts reach each other by address on that LAN; the
Compose networks a deploy creates stay inside each host's namespace; nothing appears on this
machine's own interfaces.

Services a site provides to its hosts (the Debian mirror, the registry mirror) run as processes
of this machine placed into each host's namespace with nsenter, listening on the host's own
loopback; SSH goes through a ProxyCommand that does the same (nsenter + nc to the host's sshd on
127.0.0.1:22), so the deploy uses Ansible's real ssh connection as user `deploy` with sudo.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

LAN_PREFIX = "10.213.0"
# The exact systemd-in-a-container flags measured on this kind of machine (--privileged fails).
SYSTEMD_FLAGS = [
    "--cap-add",
    "ALL",
    "--cap-drop",
    "SYS_RESOURCE",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--security-opt",
    "systempaths=unconfined",
    "--device-cgroup-rule",
    "a *:* rwm",
    "--cgroupns=host",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
]


def run(*argv: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, **kwargs)


@dataclass
class Host:
    name: str
    container: str
    address: str
    pid: int
    helpers: list[subprocess.Popen] = field(default_factory=list)

    def exec(
        self, *argv: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run("docker", "exec", "-i", self.container, *argv, check=check, input=stdin)

    def netns(self) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.pid}/ns/net"]

    def spawn(self, *argv: str, log: Path) -> None:
        """A process of this machine listening inside the host's namespace (mirror, registry)."""
        with log.open("ab") as out:
            self.helpers.append(
                subprocess.Popen([*self.netns(), *argv], stdout=out, stderr=subprocess.STDOUT)
            )

    def proxy_command(self) -> str:
        return f"nsenter --net=/proc/{self.pid}/ns/net nc 127.0.0.1 22"


class Site:
    """A set of hosts on one test-made LAN; stop() removes everything it made."""

    def __init__(self, image: str, workdir: Path) -> None:
        self.image = image
        self.workdir = workdir
        self.tag = "deploytest-" + uuid.uuid4().hex[:6]
        self.lan = self.tag
        self.hosts: dict[str, Host] = {}
        run("ip", "netns", "add", self.lan)
        run("ip", "netns", "exec", self.lan, "ip", "link", "add", "lan", "type", "bridge")
        run("ip", "netns", "exec", self.lan, "ip", "link", "set", "lan", "up")

    def add(self, name: str, public_key: str) -> Host:
        index = len(self.hosts) + 10
        container = f"{self.tag}-{name}"
        run(
            "docker",
            "run",
            "-d",
            "--name",
            container,
            "--hostname",
            name,
            "--network",
            "none",
            *SYSTEMD_FLAGS,
            "-v",
            f"{container}-docker:/var/lib/docker",
            "-v",
            f"{container}-data:/srv/platform",
            "--label",
            f"deploytest={self.tag}",
            self.image,
            "/sbin/init",
        )
        pid = int(run("docker", "inspect", "-f", "{{.State.Pid}}", container).stdout.strip())
        host = Host(name, container, f"{LAN_PREFIX}.{index}", pid)
        self.hosts[name] = host
        self._link(host, index)
        self._wait_for_systemd(host)
        self._prepare(host, public_key)
        return host

    def _link(self, host: Host, index: int) -> None:
        outside, inside = f"v{self.tag[-6:]}{index}", f"i{self.tag[-6:]}{index}"
        run(
            "ip",
            "netns",
            "exec",
            self.lan,
            "ip",
            "link",
            "add",
            outside,
            "type",
            "veth",
            "peer",
            "name",
            inside,
        )
        run("ip", "netns", "exec", self.lan, "ip", "link", "set", inside, "netns", str(host.pid))
        run("ip", "netns", "exec", self.lan, "ip", "link", "set", outside, "master", "lan", "up")
        ns = host.netns()
        run(*ns, "ip", "link", "set", inside, "name", "eth0")
        run(*ns, "ip", "addr", "add", f"{host.address}/24", "dev", "eth0")
        run(*ns, "ip", "link", "set", "eth0", "up")
        run(*ns, "ip", "route", "add", "default", "dev", "eth0")

    def _wait_for_systemd(self, host: Host) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = host.exec("systemctl", "is-system-running", check=False).stdout.strip()
            if state in ("running", "degraded"):
                return
            time.sleep(1)
        raise RuntimeError(f"systemd of {host.name} did not come up: {state}")

    def _prepare(self, host: Host, public_key: str) -> None:
        """What the site's installer gives a fresh server: a sudo user with a key, its mirror."""
        script = f"""
set -e
useradd --create-home --shell /bin/bash deploy
install -d -m 0700 -o deploy -g deploy /home/deploy/.ssh
printf '%s\\n' '{public_key}' > /home/deploy/.ssh/authorized_keys
chown deploy:deploy /home/deploy/.ssh/authorized_keys
echo 'deploy ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/deploy
chmod 0440 /etc/sudoers.d/deploy
# Docker bind-mounts these three; a real host owns them (the deploy edits /etc/hosts).
for f in hosts hostname resolv.conf; do cp /etc/$f /tmp/$f; umount /etc/$f; cp /tmp/$f /etc/$f; done
printf '127.0.0.1 localhost\\n{host.address} {host.name}\\n' > /etc/hosts
: > /etc/resolv.conf
cat > /etc/apt/sources.list <<EOF
deb [signed-by=/etc/apt/keyrings/site-mirror.asc] http://127.0.0.1:8080/ bookworm main
EOF
install -d /etc/apt/keyrings
"""
        host.exec("sh", "-c", script)

    def trust_mirror(self, host: Host, key: str) -> None:
        host.exec("sh", "-c", "cat > /etc/apt/keyrings/site-mirror.asc", stdin=key)

    def stop(self) -> None:
        for host in self.hosts.values():
            for helper in host.helpers:
                helper.terminate()
            for helper in host.helpers:
                try:
                    helper.wait(10)
                except subprocess.TimeoutExpired:
                    helper.kill()
        for host in self.hosts.values():
            run("docker", "rm", "-f", "-v", host.container, check=False)
            run(
                "docker",
                "volume",
                "rm",
                f"{host.container}-docker",
                f"{host.container}-data",
                check=False,
            )
        run("ip", "netns", "del", self.lan, check=False)
