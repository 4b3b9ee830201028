"""Background processes for local mode: start detached, remember the pid, wait until healthy, stop.

A `Daemon` outlives the Python process that started it (the demo leaves its services running
until `make demo-stop`), so its pid is written to a file together with the process start time:
`stop()` only signals a process that is still the one we started, never a recycled pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# Popen objects of the daemons this process started, by pid: kept for reaping, and so that
# none is garbage-collected while its process runs (Python warns about that).
_children: dict[int, subprocess.Popen[bytes]] = {}


class ServiceError(RuntimeError):
    """A local service did not come up; the message carries the tail of its log."""


def _start_ticks(pid: int) -> str | None:
    """The kernel's start time of `pid` (field 22 of /proc/PID/stat), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; the fields after its ')' are plain.
    return stat.rsplit(")", 1)[1].split()[19]


@dataclass
class Daemon:
    """One background process, its log file and its pid file under `state_dir`."""

    name: str
    argv: Sequence[str]
    state_dir: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    def start(self) -> int:
        """Start the process in its own session (so `stop` can end its children too)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(self.env or {})}
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
            )
        pid = process.pid
        _children[pid] = process
        self.pid_file.write_text(f"{pid} {_start_ticks(pid)}\n")
        return pid

    def pid(self) -> int | None:
        """The pid of our process if it still runs, else None."""
        try:
            pid_text, ticks = self.pid_file.read_text().split()
        except (OSError, ValueError):
            return None
        pid = int(pid_text)
        child = _children.get(pid)
        if child is not None and child.poll() is not None:
            del _children[pid]
            return None
        return pid if _start_ticks(pid) == ticks else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL what is left after `timeout` seconds."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.pid() is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.pid() is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            child = _children.pop(pid, None)
            if child is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=5)
        self.pid_file.unlink(missing_ok=True)

    def wait_for_http(self, url: str, timeout: float) -> None:
        """Poll `url` until it answers 2xx; fail early, with the log, if the process exits."""
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if not self.is_running():
                raise ServiceError(
                    f"{self.name} exited before it was ready; last lines of {self.log_file}:\n"
                    f"{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - loopback
                    if 200 <= answer.status < 300:
                        return
                    last_error = f"HTTP {answer.status}"
            except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
                last_error = str(error)
            time.sleep(0.2)
        raise ServiceError(
            f"{self.name} not ready at {url} after {timeout:.0f}s ({last_error}); "
            f"last lines of {self.log_file}:\n{self.log_tail()}"
        )
