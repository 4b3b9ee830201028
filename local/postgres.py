"""A throwaway PostgreSQL cluster on loopback, for local mode (`make demo`) and the tests.

It runs the distribution's server binaries directly: no Docker, no system service. `initdb`
refuses to run as root, so when we are root every server command runs as the `postgres` user
and the data directory is handed to that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from local.ports import free_port

SUPERUSER = "platform"


def _bindir() -> Path:
    """The newest installed PostgreSQL server's bin directory."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
    )
    if not candidates:
        raise RuntimeError(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; "
            "run `make setup` (it installs postgresql-15)."
        )
    return Path(candidates[-1]).parent


@dataclass
class LocalPostgres:
    """One cluster in `base_dir`, listening on 127.0.0.1:`port` with a generated password.

    `durable=False` turns fsync off: right for tests (nothing survives an OS crash anyway),
    wrong for benchmarks that compare against durable commits.
    """

    base_dir: Path
    port: int = field(default_factory=free_port)
    durable: bool = False

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def _password_file(self) -> Path:
        return self.base_dir / "password"

    def url(self, dbname: str = "postgres") -> str:
        password = quote(self._password_file.read_text().strip(), safe="")
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        command = [str(a) for a in args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr.strip()}")
        return done

    def _hand_to_server_user(self, path: Path) -> None:
        if os.geteuid() == 0:
            server_user = pwd.getpwnam("postgres")
            os.chown(path, server_user.pw_uid, server_user.pw_gid)

    def init(self) -> None:
        """Create the cluster once; a second call leaves an existing cluster alone."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.base_dir.chmod(0o700)
        self._hand_to_server_user(self.base_dir)
        # Written by us, read once by initdb, kept (0600) so `url()` can be rebuilt later.
        self._password_file.write_text(secrets.token_urlsafe(24))
        self._password_file.chmod(0o600)
        self._hand_to_server_user(self._password_file)
        self._run(
            _bindir() / "initdb",
            "-D",
            self.data_dir,
            "-U",
            SUPERUSER,
            "--auth=scram-sha-256",
            f"--pwfile={self._password_file}",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        )

    def start(self) -> str:
        """Initialise if needed, start, wait until it accepts connections; returns the URL."""
        self.init()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.base_dir} -c max_connections=200 "
            f"-c fsync={'on' if self.durable else 'off'} "
            f"-c synchronous_commit={'on' if self.durable else 'off'} "
            f"-c full_page_writes={'on' if self.durable else 'off'}"
        )
        self._run(
            _bindir() / "pg_ctl",
            "start",
            "-w",
            "-D",
            self.data_dir,
            "-o",
            options,
            "-l",
            self.base_dir / "server.log",
        )
        return self.url()

    def is_running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    def stop(self) -> None:
        if self.is_running():
            with contextlib.suppress(RuntimeError):
                self._run(_bindir() / "pg_ctl", "stop", "-w", "-m", "fast", "-D", self.data_dir)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)
