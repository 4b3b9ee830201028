"""An OpenSSH server on loopback that lets one user in with one key: a cluster's login node.

Its own config, host key, pid file and port under `base_dir`; the system's sshd and
`/etc/ssh` are not touched. Public-key login only, for `user` only. `environment` is set in
every session (`SetEnv`), e.g. `SLURM_CONF` of a local Slurm cluster, the way a login node's
profile points its users at the site's Slurm.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from local.ports import free_port
from local.service import Daemon, ServiceError


def keygen(path: Path, comment: str) -> Path:
    """A new ed25519 key pair at `path` (private, 0600) and `path`.pub."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


@dataclass
class TestUser:
    """A system account created for a test session, with its home under a temp directory."""

    name: str
    home: Path

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.name).pw_uid

    @property
    def gid(self) -> int:
        return pwd.getpwnam(self.name).pw_gid

    def create(self) -> None:
        self.home.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["useradd", "--home-dir", str(self.home), "--create-home", "--shell", "/bin/bash",
             "--user-group", self.name],
            check=True, capture_output=True,
        )  # fmt: skip
        # A "!" password means a locked account, which sshd refuses even for key logins.
        subprocess.run(["usermod", "-p", "*", self.name], check=True, capture_output=True)

    def authorize(self, public_key: str) -> None:
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(public_key)
        for path in (ssh_dir, ssh_dir / "authorized_keys"):
            os.chown(path, self.uid, self.gid)
        (ssh_dir / "authorized_keys").chmod(0o600)

    def delete(self) -> None:
        subprocess.run(["userdel", "--force", self.name], check=False, capture_output=True)
        shutil.rmtree(self.home, ignore_errors=True)


@dataclass
class LocalSshd:
    base_dir: Path
    user: str
    environment: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)

    @property
    def host_key(self) -> Path:
        return self.base_dir / "ssh_host_ed25519_key"

    @property
    def config(self) -> Path:
        return self.base_dir / "sshd_config"

    def known_hosts_line(self) -> str:
        """The pinned host key as `ssh-keyscan -p PORT 127.0.0.1` would print it."""
        key_type, key = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {key_type} {key}\n"

    def _daemon(self) -> Daemon:
        argv = ["/usr/sbin/sshd", "-D", "-e", "-f", str(self.config)]
        return Daemon("sshd", argv, self.base_dir)

    def start(self, timeout: float = 20) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if not self.host_key.exists():
            keygen(self.host_key, "platform-test-login-node")
        # sshd refuses to start without its privilege-separation directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        set_env = " ".join(f"{k}={v}" for k, v in self.environment.items())
        self.config.write_text(
            f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {self.host_key}
PidFile none
AuthorizedKeysFile .ssh/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
AllowUsers {self.user}
StrictModes yes
X11Forwarding no
AllowTcpForwarding no
PrintMotd no
{f"SetEnv {set_env}" if set_env else ""}
"""
        )
        subprocess.run(["/usr/sbin/sshd", "-t", "-f", str(self.config)], check=True)
        daemon = self._daemon()
        daemon.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not daemon.is_running():
                raise ServiceError(f"sshd exited:\n{daemon.log_tail()}")
            if "Server listening" in daemon.log_tail():
                return
            time.sleep(0.1)
        raise ServiceError(f"sshd not listening after {timeout:.0f}s:\n{daemon.log_tail()}")

    def stop(self) -> None:
        self._daemon().stop()
