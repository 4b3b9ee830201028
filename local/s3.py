"""A throwaway S3 endpoint on loopback for local mode: moto's S3 server.

MinIO is what production runs; it is not installable here, so local mode and the tests use
moto, which speaks the same S3 API. moto keeps objects in memory and accepts any credentials:
the fixed keys below are placeholders that make S3 clients sign requests, not secrets.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.ports import free_port
from local.service import Daemon

ACCESS_KEY_ID = "local-mode-access-key"
SECRET_ACCESS_KEY = "local-mode-secret-key"  # noqa: S105 - moto checks no credentials
REGION = "us-east-1"


@dataclass
class LocalS3:
    """moto's S3 server on 127.0.0.1:`port`, its log and pid under `state_dir`."""

    state_dir: Path
    port: int = field(default_factory=free_port)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def daemon(self) -> Daemon:
        return Daemon(
            name="s3",
            argv=[sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            state_dir=self.state_dir,
        )

    def client_env(self) -> dict[str, str]:
        """What an S3 client (boto3, MLflow's S3 store) needs to reach this endpoint."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
        }

    def start(self, timeout: float = 60.0) -> str:
        daemon = self.daemon
        daemon.start()
        daemon.wait_for_http(f"{self.endpoint}/moto-api/", timeout)
        return self.endpoint

    def is_running(self) -> bool:
        return self.daemon.is_running()

    def stop(self) -> None:
        self.daemon.stop()

    def client(self) -> Any:
        """A boto3 S3 client for this endpoint."""
        import boto3  # deferred: boto3 is a dev dependency, imported only where local mode runs

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            region_name=REGION,
        )

    def ensure_bucket(self, name: str) -> None:
        client = self.client()
        existing = {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}
        if name not in existing:
            client.create_bucket(Bucket=name)
