"""A one-node Slurm cluster on loopback (munged, slurmctld, slurmd) from Debian's packages.

Everything it needs lives under `base_dir`: its own munge key and socket, `slurm.conf`,
state, spool, logs and pid files, and its own ports, so it neither needs nor touches
`/etc/slurm`, `/run/munge` or any system service. Clients find it through `SLURM_CONF`.

Must run as root: slurmd starts job steps as the submitting user, and munged and slurmctld
run as their own users (`munge`, `slurm`), which own their directories here. `base_dir`
must be traversable by those users (not pytest's 0700 tmp dirs).

Without slurmdbd there is no `sacct` history: a finished job is visible to
`scontrol show job` for `MinJobAge` seconds, set long enough here for a test to read it.
`OverTimeLimit=0` and a short `KillWait` make a job past its time limit end as TIMEOUT
within seconds of the limit (Slurm checks limits about every 30 s).
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

MIN_JOB_AGE_SECONDS = 900


def _own(path: Path, user: str, mode: int = 0o755) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(mode)
    return path


@dataclass
class LocalSlurm:
    """munged + slurmctld + slurmd for node `localhost` with every CPU of this machine."""

    base_dir: Path
    ctld_port: int = field(default_factory=free_port)
    slurmd_port: int = field(default_factory=free_port)
    memory_mb: int = 2048
    cluster_name: str = "platform-test"

    @property
    def conf(self) -> Path:
        return self.base_dir / "etc" / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.base_dir / "munge" / "run" / "munge.socket"

    @property
    def env(self) -> dict[str, str]:
        """What a client (sbatch, squeue, scontrol) needs to talk to this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def _daemons(self) -> list[Daemon]:
        logs = self.base_dir / "logs"
        munged = [
            "runuser", "-u", "munge", "--", "/usr/sbin/munged", "--foreground",
            f"--socket={self.munge_socket}",
            f"--key-file={self.base_dir / 'munge' / 'etc' / 'munge.key'}",
            f"--pid-file={self.base_dir / 'munge' / 'run' / 'munged.pid'}",
            f"--seed-file={self.base_dir / 'munge' / 'lib' / 'munged.seed'}",
            f"--log-file={self.base_dir / 'munge' / 'log' / 'munged.log'}",
        ]  # fmt: skip
        return [
            Daemon("munged", munged, logs),
            Daemon("slurmctld", ["/usr/sbin/slurmctld", "-D", "-f", str(self.conf)], logs),
            Daemon(
                "slurmd",
                ["/usr/sbin/slurmd", "-D", "-f", str(self.conf), "-N", "localhost"],
                logs,
            ),
        ]

    def write_config(self) -> None:
        if os.geteuid() != 0:
            raise RuntimeError("the local Slurm cluster needs root (slurmd runs jobs as users)")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.base_dir.chmod(0o755)
        for sub in ("etc", "run", "lib", "log"):
            _own(self.base_dir / "munge" / sub, "munge", 0o700 if sub != "run" else 0o755)
        key = self.base_dir / "munge" / "etc" / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
            entry = pwd.getpwnam("munge")
            os.chown(key, entry.pw_uid, entry.pw_gid)
            key.chmod(0o400)
        state = _own(self.base_dir / "state", "slurm", 0o700)
        spool = self.base_dir / "spool"
        spool.mkdir(exist_ok=True)
        logs = _own(self.base_dir / "logs", "slurm", 0o755)
        (self.base_dir / "etc").mkdir(exist_ok=True)
        cpus = os.cpu_count() or 1
        self.conf.write_text(
            f"""\
ClusterName={self.cluster_name}
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
CredType=cred/munge
StateSaveLocation={state}
SlurmdSpoolDir={spool}
SlurmctldPidFile={self.base_dir / "run-slurmctld.pid"}
SlurmdPidFile={self.base_dir / "run-slurmd.pid"}
SlurmctldLogFile={logs / "slurmctld.log"}
SlurmdLogFile={logs / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
MinJobAge={MIN_JOB_AGE_SECONDS}
KillWait=2
OverTimeLimit=0
InactiveLimit=0
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={self.memory_mb} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
        )

    def start(self, timeout: float = 60) -> None:
        self.write_config()
        daemons = self._daemons()
        daemons[0].start()
        self._wait(lambda: self.munge_socket.exists(), daemons[0], timeout)
        for daemon in daemons[1:]:
            daemon.start()
        self._wait(self._node_idle, daemons[2], timeout)

    def _wait(self, ready, daemon: Daemon, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for each in self._daemons():
                if each.pid_file.exists() and not each.is_running():
                    raise ServiceError(f"{each.name} exited; its log:\n{each.log_tail()}")
            if ready():
                return
            time.sleep(0.3)
        raise ServiceError(f"{daemon.name} not ready after {timeout:.0f}s:\n{daemon.log_tail()}")

    def _node_idle(self) -> bool:
        done = self.run("sinfo", "-h", "-N", "-o", "%t", check=False)
        return done.returncode == 0 and done.stdout.strip() == "idle"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A Slurm client command against this cluster, as root."""
        return subprocess.run(
            list(args),
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def queue(self) -> list[str]:
        """Ids of the jobs Slurm still has pending, running or completing."""
        done = self.run("squeue", "-h", "-o", "%i")
        return done.stdout.split()

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (values containing spaces are not split)."""
        done = self.run("scontrol", "show", "job", "-o", job_id)
        return parse_scontrol(done.stdout)

    def cancel_all(self) -> None:
        for job_id in self.queue():
            self.run("scancel", job_id, check=False)

    def stop(self) -> None:
        for daemon in reversed(self._daemons()):
            daemon.stop()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)


def parse_scontrol(line: str) -> dict[str, str]:
    """Key=value pairs of one `scontrol show -o` line; a value runs to the next ` Key=`."""
    fields: dict[str, str] = {}
    key = None
    for token in line.strip().split(" "):
        name, sep, value = token.partition("=")
        if sep and name and (name[0].isupper() or "/" in name) and name.replace("/", "").isalnum():
            key = name
            fields[key] = value
        elif key is not None:
            fields[key] += " " + token
    return fields
