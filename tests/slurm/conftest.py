"""An HPC cluster on loopback: real Slurm (munged, slurmctld, slurmd), and a login node (sshd)
that lets a test user in with a key. The user is created for the session and removed after."""

from __future__ import annotations

import base64
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from local.slurm import LocalSlurm
from local.sshd import LocalSshd, TestUser, keygen
from tests.bridge.test_provenance import jwks, keys, run_settings, runs_api  # noqa: F401 - fixtures


@dataclass
class HpcCluster:
    slurm: LocalSlurm
    login: LocalSshd
    user: TestUser
    key: Path  # the CI job's private key (PEM), root-only

    @property
    def remote_root(self) -> str:
        return str(self.user.home / "ci")

    def variables(self, *, base64_key: bool = True) -> dict[str, str]:
        """The CI/CD variables a project sets for the cluster (docs/hpc.md).

        The key as base64 (what GitLab can mask), or as a File variable (a path: the variables
        file of gitlab-ci-local turns an existing path into a File variable).
        """
        key = base64.b64encode(self.key.read_bytes()).decode() if base64_key else str(self.key)
        return {
            "SLURM_SSH_PRIVATE_KEY": key,
            "SLURM_SSH_KNOWN_HOSTS": self.login.known_hosts_line(),
        }

    def inputs(self, **more: object) -> dict[str, object]:
        return {
            "login_host": "127.0.0.1",
            "login_port": self.login.port,
            "login_user": self.user.name,
            "remote_root": self.remote_root,
            "poll_max_interval": 3,
            **more,
        }


@pytest.fixture(scope="session")
def hpc_cluster() -> Iterator[HpcCluster]:
    base = Path(tempfile.mkdtemp(prefix="slurm-test-"))
    base.chmod(0o755)  # munged, slurmctld and the test user must reach their directories
    user = TestUser(f"hpc{secrets.token_hex(3)}", base / "home" / "user")
    slurm = LocalSlurm(base / "cluster")
    login = LocalSshd(base / "sshd", user.name, environment=slurm.env)
    try:
        user.create()
        (base / "keys").mkdir(mode=0o700)
        key = keygen(base / "keys" / "ci-job", "ci-job")
        user.authorize(key.with_suffix(".pub").read_text())
        slurm.start()
        login.start()
        yield HpcCluster(slurm, login, user, key)
    finally:
        login.stop()
        if slurm.conf.exists():
            slurm.cancel_all()
        slurm.destroy()
        user.delete()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def empty_queue(hpc_cluster: HpcCluster) -> Iterator[HpcCluster]:
    """The cluster with no job queued or running before and after the test."""
    hpc_cluster.slurm.cancel_all()
    yield hpc_cluster
    hpc_cluster.slurm.cancel_all()
