"""The bridge itself, run on loopback for local mode: migrated database, `bridge serve`, a client.

It trusts CI ID tokens from the local issuer only (`BRIDGE_GITLAB_URL` is the issuer's URL,
`BRIDGE_JWKS_URL` its JWKS on loopback), so tokens minted in local mode mean nothing elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from local.gcl import JobResult
from local.ports import free_port
from local.service import Daemon

LOCAL_RUNNER = {
    "id": 1,
    "description": "local",
    "runner_type": "instance_type",
    "active": True,
    "is_shared": True,
    "tags": [],
}


@dataclass
class LocalBridge:
    """`bridge serve` on 127.0.0.1:`port` with the given database and tokens."""

    state_dir: Path
    database_url: str
    rates_file: Path
    webhook_token: str
    admin_token: str
    issuer_url: str
    jwks_url: str
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {
            "BRIDGE_DATABASE_URL": self.database_url,
            "BRIDGE_WEBHOOK_TOKEN": self.webhook_token,
            "BRIDGE_ADMIN_TOKEN": self.admin_token,
            "BRIDGE_RATES_FILE": str(self.rates_file),
            "BRIDGE_GITLAB_URL": self.issuer_url,
            "BRIDGE_PUBLIC_URL": self.url,
            "BRIDGE_JWKS_URL": self.jwks_url,
        }

    @property
    def daemon(self) -> Daemon:
        return Daemon(
            name="bridge",
            argv=[sys.executable, "-m", "bridge", "serve", "--port", str(self.port)],
            state_dir=self.state_dir,
            env=self.env(),
        )

    def cli(self, *args: str) -> str:
        """Run `bridge ARGS...` against this bridge's database; returns stdout."""
        done = subprocess.run(
            [sys.executable, "-m", "bridge", *args],
            env={**os.environ, **self.env()},
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"bridge {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def start(self, timeout: float = 60.0) -> str:
        self.cli("migrate")
        daemon = self.daemon
        daemon.start()
        daemon.wait_for_http(f"{self.url}/healthz", timeout)
        return self.url

    def is_running(self) -> bool:
        return self.daemon.is_running()

    def stop(self) -> None:
        self.daemon.stop()

    def add_client(self, slug: str) -> str:
        """Register billing client `slug`; returns its API token (printed once by the CLI)."""
        return self.cli("clients", "add", slug).strip().splitlines()[0]

    def request(
        self, method: str, path: str, *, token: str | None = None, body: Any = None, **headers: str
    ) -> tuple[int, Any]:
        """One HTTP call; returns (status, decoded JSON body or text)."""
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(  # noqa: S310 - loopback URL we built
            f"{self.url}{path}", data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback
                status, raw = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return status, raw.decode(errors="replace")

    def report_job(self, payload: dict[str, Any]) -> tuple[int, Any]:
        """Deliver one Job Hook event, as GitLab's webhook would."""
        return self.request(
            "POST",
            "/hooks/gitlab",
            body=payload,
            **{"X-Gitlab-Token": self.webhook_token, "X-Gitlab-Event": "Job Hook"},
        )


def job_hook(
    result: JobResult,
    *,
    project_path: str,
    sha: str,
    ref: str = "main",
    project_id: int = 1,
    runner: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Job Hook payload (gitlab-contracts.md section 1.1) for a job run in local mode."""
    job_id, pipeline_id, status = result.job_id, result.pipeline_id, result.status
    started_at, finished_at = result.started_at, result.finished_at

    def iso(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    group, _, project = project_path.rpartition("/")
    return {
        "object_kind": "build",
        "ref": ref,
        "tag": False,
        "before_sha": "0" * 40,
        "sha": sha,
        "build_id": job_id,
        "build_name": result.name,
        "build_stage": result.stage,
        "build_status": status,
        "build_created_at": iso(started_at),
        "build_started_at": iso(started_at),
        "build_finished_at": iso(finished_at),
        "build_created_at_iso": iso(started_at),
        "build_started_at_iso": iso(started_at),
        "build_finished_at_iso": iso(finished_at),
        "build_duration": round((finished_at - started_at).total_seconds(), 3),
        "build_queued_duration": 0.0,
        "build_allow_failure": False,
        "build_failure_reason": "script_failure" if status == "failed" else None,
        "retries_count": 0,
        "pipeline_id": pipeline_id,
        "project_id": project_id,
        "project_name": f"{group} / {project}",
        "user": {"id": 1, "name": "local", "username": "local", "email": "[REDACTED]"},
        "commit": {"id": pipeline_id, "sha": sha, "status": status},
        "repository": {"name": project, "url": "", "homepage": ""},
        "project": {
            "id": project_id,
            "name": project,
            "path_with_namespace": project_path,
            "namespace": group,
            "default_branch": ref,
        },
        "runner": runner or LOCAL_RUNNER,
        "environment": None,
    }
