"""Post-deploy checks: from inside the service host's network namespace, through nginx on the
service address, with the CA `make secrets` generated (curl --resolve, --cacert)."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook

from tests.bridge.payloads import job_event
from tests.deploy.site import DOMAIN, Deployment

STACK = "/opt/platform/compose"
COLLECTOR = "/opt/platform/collector"


class Https:
    def __init__(self, site: Deployment) -> None:
        self.site = site
        self.host = site.service_host()
        self.ca = site.secrets / "ca/ca.crt"

    def secret(self, name: str) -> str:
        return (self.site.secrets / name).read_text().strip()

    def curl(self, service: str, path: str, *args: str) -> tuple[int, str]:
        """(HTTP status, body) of https://<service>.<domain><path> through nginx."""
        name = f"{service}.{DOMAIN}"
        argv = [
            *self.host.netns(),
            "curl",
            "-sS",
            "--max-time",
            "30",
            "--cacert",
            str(self.ca),
            "--resolve",
            f"{name}:443:{self.host.address}",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            *args,
            f"https://{name}{path}",
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        body, _, status = done.stdout.rpartition("\n")
        return int(status or 0), body + done.stderr


def compose(site: Deployment, project_dir: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return site.service_host().exec(
        "docker", "compose", "--project-directory", project_dir, *argv, check=False
    )


def mlflow_health(https: Https) -> None:
    status, body = https.curl("mlflow", "/health")
    assert status == 200, body


def mlflow_api_needs_a_gitlab_identity(https: Https) -> None:
    """MLflow's API behind its GitLab login (mlflow-oidc-auth): nothing without credentials, and
    a bearer token GitLab did not sign is refused. A run logged with a CI job's ID token needs a
    user MLflow knows (a GitLab login first), which the GitLab stand-in cannot provide: that path
    is covered by tests/identity (docs/operations.md, section 9)."""
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    status, body = https.curl("mlflow", search)
    assert status == 401, body
    status, body = https.curl("mlflow", search, "-H", "Authorization: Bearer e30.e30.forged")
    assert status == 401, body


def bridge_ready(https: Https) -> None:
    status, body = https.curl("bridge", "/readyz")
    assert status == 200, body


def job_hook_recorded(https: Https) -> None:
    build_id = 700000 + uuid.uuid4().int % 100000
    body = json.dumps(job_event(build_id, "success", duration=60.0, finished=datetime.now(UTC)))
    moment = datetime.now(UTC)
    message = f"msg-{build_id}"
    signature = Webhook(https.secret("bridge/webhook_signing_key")).sign(message, moment, body)
    status, answer = https.curl(
        "bridge",
        "/hooks/gitlab",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-H",
        "X-Gitlab-Event: Job Hook",
        "-H",
        f"X-Gitlab-Token: {https.secret('bridge/webhook_token')}",
        "-H",
        f"webhook-id: {message}",
        "-H",
        f"webhook-timestamp: {int(moment.timestamp())}",
        "-H",
        f"webhook-signature: {signature}",
        "--data-binary",
        body,
    )
    assert status in (200, 202), answer
    recorded = compose(
        https.site,
        STACK,
        "exec",
        "-T",
        "postgres-service",
        "psql",
        "-XAt",
        "-U",
        "postgres",
        "-d",
        "bridge",
        "-c",
        f"select count(*) from jobs where build_id = {int(build_id)}",  # noqa: S608 (an int)
    )
    assert recorded.stdout.strip() == "1", recorded.stdout + recorded.stderr


def s3_put_get(https: Https) -> None:
    """An object written and read back through the MinIO vhost with SigV4 (datasets writer)."""
    auth = [
        "--aws-sigv4",
        "aws:amz:us-east-1:s3",
        "-u",
        f"datasets-writer:{https.secret('minio/datasets_writer_secret_key')}",
    ]
    key = f"/datasets/converge-{uuid.uuid4().hex}.txt"
    # A type of its own: curl's default form type makes moto (the MinIO stand-in) store nothing.
    put = ["-X", "PUT", "-H", "Content-Type: text/plain", "--data-binary", "converged"]
    status, body = https.curl("minio", key, *auth, *put)
    assert status == 200, body
    status, body = https.curl("minio", key, *auth)
    assert (status, body.strip()) == (200, "converged")


def backup_objects(https: Https) -> list[str]:
    """Keys in the backup bucket (listed with the MinIO root account)."""
    auth = [
        "--aws-sigv4",
        "aws:amz:us-east-1:s3",
        "-u",
        f"platform-admin:{https.secret('minio/root_password')}",
    ]
    status, body = https.curl("minio", "/platform-backups?list-type=2", *auth)
    assert status == 200, body
    return re.findall(r"<Key>([^<]+)</Key>", body)


def collector_proxy(site: Deployment, host_name: str) -> None:
    """The collector's read-only Docker API proxy: /_ping answers, a write is refused."""
    host = site.site.hosts[host_name]
    probe = (
        "import urllib.request, urllib.error\n"
        "print(urllib.request.urlopen('http://docker-api-ro:2375/_ping', timeout=5).status)\n"
        "try:\n"
        "    urllib.request.urlopen(urllib.request.Request("
        "'http://docker-api-ro:2375/containers/create', data=b'{}', method='POST'), timeout=5)\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code)\n"
    )
    done = host.exec(
        "docker",
        "compose",
        "--project-directory",
        COLLECTOR,
        "exec",
        "-T",
        "collector",
        "python",
        "-c",
        probe,
        check=False,
    )
    assert done.stdout.split() == ["200", "403"], done.stdout + done.stderr


def file_mtime(site: Deployment, path: str) -> float:
    return float(site.service_host().exec("stat", "-c", "%Y", path).stdout)


def started_at(site: Deployment, service: str) -> float:
    """When the service's container (re)started, as seconds since the epoch."""
    cid = compose(site, STACK, "ps", "-q", service).stdout.strip()
    started = (
        site.service_host()
        .exec("docker", "inspect", "-f", "{{.State.StartedAt}}", cid)
        .stdout.strip()
    )
    return datetime.fromisoformat(started[:26].rstrip("Z") + "+00:00").timestamp()
