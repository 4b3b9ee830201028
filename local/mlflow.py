"""A throwaway MLflow tracking server on loopback: Postgres backend, S3 artifacts.

The server proxies artifacts (`--artifacts-destination`), so only the server holds S3
credentials; clients and jobs talk HTTP to the server alone, as in production.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from local.ports import free_port
from local.s3 import LocalS3
from local.service import Daemon


def sqlalchemy_url(postgres_url: str) -> str:
    """MLflow's SQLAlchemy backend wants the psycopg 3 driver named in the URL."""
    scheme, rest = postgres_url.split("://", 1)
    if scheme not in {"postgresql", "postgres"}:
        raise ValueError(f"not a PostgreSQL URL: {scheme}://...")
    return f"postgresql+psycopg://{rest}"


@dataclass
class LocalMlflow:
    """`mlflow server` on 127.0.0.1:`port`; artifacts under `artifacts_destination` in `s3`."""

    state_dir: Path
    backend_url: str
    s3: LocalS3
    artifacts_destination: str = "s3://mlflow/artifacts"
    port: int = field(default_factory=free_port)
    name: str = "mlflow"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def server_command(self) -> list[str]:
        return [sys.executable, "-m", "mlflow", "server"]

    def environment(self) -> dict[str, str]:
        return {
            **self.s3.client_env(),
            # Through the environment, so the database password stays out of `ps`.
            "MLFLOW_BACKEND_STORE_URI": sqlalchemy_url(self.backend_url),
            # Job execution starts a Huey consumer and worker pool we do not use.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }

    @property
    def daemon(self) -> Daemon:
        argv = [
            *self.server_command(),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--artifacts-destination",
            self.artifacts_destination,
        ]
        return Daemon(name=self.name, argv=argv, state_dir=self.state_dir, env=self.environment())

    def launch(self) -> None:
        """Start the server without waiting for it (see `wait_until_ready`)."""
        bucket = self.artifacts_destination.removeprefix("s3://").split("/", 1)[0]
        self.s3.ensure_bucket(bucket)
        self.daemon.start()

    def wait_until_ready(self, timeout: float = 120.0) -> str:
        self.daemon.wait_for_http(f"{self.url}/health", timeout)
        return self.url

    def start(self, timeout: float = 120.0) -> str:
        self.launch()
        return self.wait_until_ready(timeout)

    def is_running(self) -> bool:
        return self.daemon.is_running()

    def stop(self) -> None:
        self.daemon.stop()
