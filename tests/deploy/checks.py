"""Post-deploy checks: from inside the service host's network namespace, through nginx on the
service address, with the CA `make secrets` generated (curl --resolve, --cacert)."""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from standardwebhooks.webhooks import Webhook

from tests.bridge.payloads import job_event
from tests.deploy.site import DOMAIN, Deployment

STACK = "/opt/platform/compose"
COLLECTOR = "/opt/platform/collector"
MLFLOW_MEMBER = Path(__file__).with_name("mlflow_member.py")
# The login group of both shipped inventories (identity_login_groups): experiments of its
# members' jobs are named `ml-users/...`.
CI_GROUP = "ml-users"
CI_USER = {"id": 41, "username": "converge-ci", "email": f"converge-ci@{DOMAIN}"}
# A GitLab user who never became known to MLflow.
STRANGER = {"id": 42, "username": "stranger", "email": f"stranger@{DOMAIN}"}


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
    a bearer token that is not even a signed JWT is refused."""
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    status, body = https.curl("mlflow", search)
    assert status == 401, body
    status, body = https.curl("mlflow", search, "-H", "Authorization: Bearer e30.e30.forged")
    assert status == 401, body


def mint_ci_id_token(https: Https, user: dict[str, Any], project_path: str) -> str:
    """An ID token for a job `user` started in `project_path`, with the MLflow URL as audience
    (`id_tokens: MLFLOW_ID_TOKEN: aud:` in pipeline-templates/templates/train.yml), signed by
    the GitLab stand-in (its test-only `POST /-/ci-token`, with the deploy's admin token)."""
    request = {"user": user, "project_path": project_path, "aud": f"https://mlflow.{DOMAIN}"}
    status, body = https.curl(
        "gitlab",
        "/-/ci-token",
        "-X",
        "POST",
        "-H",
        f"PRIVATE-TOKEN: {https.secret('gitlab/admin_token')}",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        json.dumps(request),
    )
    assert status == 201, body
    return json.loads(body)["token"]


def forged_like(token: str) -> str:
    """The same claims and `kid`, signed by a key GitLab never had."""
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    claims = jwt.decode(token, options={"verify_signature": False})
    kid = jwt.get_unverified_header(token)["kid"]
    return jwt.encode(claims, forger, algorithm="RS256", headers={"kid": kid})


def mlflow_run_logged_with_a_ci_id_token(https: Https) -> None:
    """What a training job does (MLFLOW_TRACKING_TOKEN=$MLFLOW_ID_TOKEN): as the user who
    started it, create its experiment `<group>/...`, start a run, log a metric, end the run,
    and read it back; all through nginx. Then a token signed by another key, and one of a user
    MLflow does not know, get 401. MLflow fetches GitLab's discovery document and keys over
    HTTPS through nginx, so this also checks that path and the site's CA inside the container."""
    member = compose(
        https.site,
        STACK,
        "exec",
        "-T",
        "mlflow",
        "python",
        "-c",
        MLFLOW_MEMBER.read_text(),
        CI_USER["email"],
        CI_GROUP,
    )
    assert member.returncode == 0, member.stdout + member.stderr
    project = f"{CI_GROUP}/converge-model"
    token = mint_ci_id_token(https, CI_USER, project)

    def api(path: str, document: dict[str, Any] | None = None) -> dict[str, Any]:
        data = [] if document is None else ["--data-binary", json.dumps(document)]
        status, body = https.curl(
            "mlflow",
            f"/api/2.0/mlflow/{path}",
            "-H",
            f"Authorization: Bearer {token}",
            "-H",
            "Content-Type: application/json",
            *data,
        )
        assert status == 200, f"{path}: {status} {body}"
        return json.loads(body)

    experiment = api("experiments/create", {"name": f"{CI_GROUP}/converge-check"})
    now = int(time.time() * 1000)
    started = {"experiment_id": experiment["experiment_id"], "start_time": now}
    run = api("runs/create", started)["run"]["info"]
    metric = {"key": "converge", "value": 1.5, "timestamp": now, "step": 0}
    api("runs/log-metric", {"run_id": run["run_id"], **metric})
    api("runs/update", {"run_id": run["run_id"], "status": "FINISHED", "end_time": now + 1})
    logged = api(f"runs/get?run_id={run['run_id']}")["run"]
    assert logged["info"]["experiment_id"] == experiment["experiment_id"], logged
    assert logged["info"]["status"] == "FINISHED", logged
    metrics = {m["key"]: m["value"] for m in logged["data"].get("metrics", [])}
    assert metrics == {"converge": 1.5}, logged
    # MLflow reached GitLab's keys above, so these are refused for what they are.
    for refused in (forged_like(token), mint_ci_id_token(https, STRANGER, project)):
        status, body = https.curl(
            "mlflow",
            "/api/2.0/mlflow/experiments/search?max_results=1",
            "-H",
            f"Authorization: Bearer {refused}",
        )
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
