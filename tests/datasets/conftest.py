"""Datasets against real parts: Postgres, moto's S3 server, the bridge app and CLI."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from bridge.api.app import create_app
from bridge.cli import main
from bridge.settings import Settings
from local.s3 import LocalS3

_buckets = itertools.count()


@pytest.fixture
def bucket(local_s3: LocalS3) -> str:
    """A bucket of this test alone, so that 'already stored' means stored by this test."""
    name = f"datasets-test-{os.getpid()}-{next(_buckets)}"
    local_s3.ensure_bucket(name)
    return name


@pytest.fixture
def datasets_env(
    bridge_env: dict[str, str], local_s3: LocalS3, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The bridge's environment plus S3; also set in this process, where boto3 reads it."""
    env = {**bridge_env, **local_s3.client_env(), "BRIDGE_DATASETS_BUCKET": bucket}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def app(datasets_env: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(Settings.from_env(datasets_env))) as client:
        yield client


def bridge_cli(env: dict[str, str], *args: str) -> Any:
    """Run `bridge ARGS` in-process; returns the parsed JSON output (asserts success)."""
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def write_random(path: Path, size: int) -> Path:
    """SIZE random bytes (incompressible), written in 8 MiB blocks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 8 << 20))
            out.write(block)
            left -= len(block)
    return path
