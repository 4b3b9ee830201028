"""The helper programs the roles install, run for real: against an S3 endpoint on loopback
(moto), against botocore's signer, and with stand-ins for `docker` and `df`."""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from unittest import mock

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from minio import Minio

from local.s3 import ACCESS_KEY_ID, SECRET_ACCESS_KEY, LocalS3
from tests.fixtures.provisioning import REPO

ROLES = REPO / "ansible/roles"


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


s3_roundtrip = load(ROLES / "runner_host/files/s3_roundtrip.py")
minio_bootstrap = load(ROLES / "minio/files/minio_bootstrap.py")
backup_upload = load(ROLES / "backup/files/backup_upload.py")


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3]:
    server = LocalS3(tmp_path_factory.mktemp("s3"))
    server.start()
    yield server
    server.stop()


def minio_client(s3: LocalS3) -> Minio:
    return Minio(
        f"127.0.0.1:{s3.port}", access_key=ACCESS_KEY_ID, secret_key=SECRET_ACCESS_KEY, secure=False
    )


def test_cache_check_signs_exactly_like_botocore() -> None:
    now = dt.datetime(2026, 11, 22, 12, 30, 5, tzinfo=dt.UTC)
    url = "https://minio.ml.example.org/runner-cache/deploy-check/gpu-01/ab%20c.bin"
    body = b"payload bytes"
    ours = s3_roundtrip.sign("PUT", url, body, "runner-cache", "s3cr3t/key", "us-east-1", now)
    request = AWSRequest(method="PUT", url=url, data=body)
    request.headers["x-amz-content-sha256"] = ours["x-amz-content-sha256"]
    with mock.patch("botocore.auth.get_current_datetime", return_value=now.replace(tzinfo=None)):
        S3SigV4Auth(Credentials("runner-cache", "s3cr3t/key"), "s3", "us-east-1").add_auth(request)
    assert ours["authorization"] == request.headers["Authorization"]
    assert ours["x-amz-date"] == request.headers["X-Amz-Date"]


def test_cache_check_round_trips_an_object(s3: LocalS3, monkeypatch: pytest.MonkeyPatch) -> None:
    minio_client(s3).make_bucket("cache-check")
    monkeypatch.setenv("S3_ENDPOINT", s3.endpoint)
    monkeypatch.setenv("S3_BUCKET", "cache-check")
    monkeypatch.setenv("S3_ACCESS_KEY", ACCESS_KEY_ID)
    monkeypatch.setenv("S3_SECRET_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("S3_PREFIX", "deploy-check/runner-01")
    result = s3_roundtrip.roundtrip()
    assert result["ok"] is True
    assert result["object"].startswith("deploy-check/runner-01/")
    assert list(minio_client(s3).list_objects("cache-check", recursive=True)) == []
    monkeypatch.setenv("S3_BUCKET", "no-such-bucket")
    assert s3_roundtrip.main() == 1


def test_bucket_plan_is_applied_once(s3: LocalS3) -> None:
    client = minio_client(s3)
    plan = [
        {"name": "plan-cache", "expire_days": 14},
        {"name": "plan-artifacts", "expire_days": None},
    ]
    first = minio_bootstrap.ensure_buckets(client, plan)
    assert first == [
        "bucket plan-cache created",
        "bucket plan-cache: objects expire after 14 days",
        "bucket plan-artifacts created",
    ]
    assert minio_bootstrap.ensure_buckets(client, plan) == []
    rule = client.get_bucket_lifecycle("plan-cache").rules[0]
    assert (rule.rule_id, rule.expiration.days) == ("platform-expiry", 14)
    plan[0]["expire_days"] = 7
    assert minio_bootstrap.ensure_buckets(client, plan) == [
        "bucket plan-cache: objects expire after 7 days"
    ]


def test_least_privilege_policies() -> None:
    append = minio_bootstrap.policy_document("platform-backups", "append")
    actions = {a for statement in append["Statement"] for a in statement["Action"]}
    assert "s3:DeleteObject" not in actions
    assert "s3:PutObject" in actions
    readonly = minio_bootstrap.policy_document("datasets", "readonly")
    resources = {r for statement in readonly["Statement"] for r in statement["Resource"]}
    assert resources == {"arn:aws:s3:::datasets", "arn:aws:s3:::datasets/*"}
    assert "s3:PutObject" not in {a for s in readonly["Statement"] for a in s["Action"]}


def test_backup_upload_puts_the_whole_run(s3: LocalS3, tmp_path: Path) -> None:
    client = minio_client(s3)
    client.make_bucket("backups-test")
    run = tmp_path / "20260101T000000Z"
    (run / "postgres-service").mkdir(parents=True)
    (run / "postgres-service/mlflow.dump").write_bytes(os.urandom(70 * 1024 * 1024))
    (run / "SHA256SUMS").write_text("sums\n")
    names = backup_upload.upload_run(client, "backups-test", run)
    assert names == ["20260101T000000Z/SHA256SUMS", "20260101T000000Z/postgres-service/mlflow.dump"]
    stat = client.stat_object("backups-test", names[1])
    assert stat.size == 70 * 1024 * 1024
    with pytest.raises(RuntimeError, match="no file"):
        backup_upload.upload_run(client, "backups-test", tmp_path / "empty")


FAKE_DF = """#!/usr/bin/env bash
printf 'Use%%\\n %s%%\\n' "$FAKE_DISK_USED"
"""
FAKE_DOCKER = """#!/usr/bin/env bash
if [[ $1 == info ]]; then echo /var/lib/docker; exit 0; fi
echo "$*" >>"$FAKE_DOCKER_LOG"
"""


@pytest.mark.parametrize(
    ("mode", "used", "expected_age"),
    [("pressure", 50, None), ("pressure", 91, "1h"), ("scheduled", 10, "168h")],
)
def test_disk_cleanup(tmp_path: Path, mode: str, used: int, expected_age: str | None) -> None:
    for name, text in {"df": FAKE_DF, "docker": FAKE_DOCKER}.items():
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o755)
    log = tmp_path / "docker.log"
    done = subprocess.run(
        [str(ROLES / "runner_host/files/runner-disk-cleanup"), mode],
        capture_output=True,
        text=True,
        check=False,
        env={
            **os.environ,
            "PATH": f"{tmp_path}:{os.environ['PATH']}",
            "FAKE_DISK_USED": str(used),
            "FAKE_DOCKER_LOG": str(log),
            "CLEANUP_DISK_PRESSURE_PERCENT": "80",
        },
    )
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines() if log.exists() else []
    if expected_age is None:
        assert calls == []
        return
    assert calls == [
        "container prune --force --filter label=com.gitlab.gitlab-runner.managed=true "
        f"--filter until={expected_age}",
        "volume prune --force --filter label=com.gitlab.gitlab-runner.managed=true",
        f"image prune --all --force --filter until={expected_age}",
        f"builder prune --force --filter until={expected_age}",
    ]
