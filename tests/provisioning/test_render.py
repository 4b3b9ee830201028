"""`make render` of both inventories, checked with the real tools.

The Compose schema (compose-spec.json) is vendored byte for byte from the one Docker Compose
v2.40.3 embeds (compose-go; upstream https://github.com/compose-spec/compose-spec/blob/main/
schema/compose-spec.json), sha256 89f4bdc4ba651ff024118917a7cdb67d9d78c1af4bab9b12ec2fc85f5b7d90d3.
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.fixtures.provisioning import Render

SCHEMA = Path(__file__).with_name("compose-spec.json")
SCHEMA_SHA256 = "89f4bdc4ba651ff024118917a7cdb67d9d78c1af4bab9b12ec2fc85f5b7d90d3"
DIGEST = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
SERVICE_HOSTS = {"example": "svc-01", "single-host": "platform-01"}
RUNNER_HOSTS = {"example": ["gpu-01", "runner-01"], "single-host": ["platform-01"]}
INVENTORIES = ["example", "single-host"]


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def secret_values(secrets: Path) -> dict[str, str]:
    """Every secret value (certificates are public and left out), by its file."""
    values = {}
    for path in files(secrets):
        if path.suffix == ".crt":
            continue
        text = path.read_text().strip()
        if path.suffix == ".key":
            text = "".join(text.splitlines()[1:-1])[:48]  # a slice of the key body
        if path.suffix == ".json":
            text = json.loads(text)["token"]
        lines = text.splitlines() if path.name == "htpasswd" else [text]
        for number, line in enumerate(lines):
            values[f"{path.relative_to(secrets)}#{number}"] = line.split(":", 1)[-1]
    return values


def compose_files(render: Render) -> list[Path]:
    return [p for p in files(render.dest) if p.name == "compose.yml"]


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_every_host_gets_its_files(renders: dict[str, Render], inventory: str) -> None:
    render = renders[inventory]
    service = render.host(SERVICE_HOSTS[inventory])
    assert render.hosts() == sorted({SERVICE_HOSTS[inventory], *RUNNER_HOSTS[inventory]})
    for path in [
        "opt/platform/compose/compose.yml",
        "opt/platform/nginx/nginx.conf",
        "opt/platform/nginx/certs/platform.key",
        "opt/platform/gitlab/omnibus_config.rb",
        "opt/platform/bridge/rates.yml",
        "opt/platform/bridge/src/bridge/Dockerfile",
        "opt/platform/mlflow/Dockerfile",
        "opt/platform/minio/bootstrap.json",
        "opt/platform/bin/platform-backup",
        "etc/systemd/system/platform-backup.timer",
        "etc/systemd/system/platform-mlflow-gc.timer",
        "etc/docker/daemon.json",
    ]:
        assert (service / path).is_file(), path
    for host in RUNNER_HOSTS[inventory]:
        for path in [
            "etc/gitlab-runner/config.toml",
            "opt/platform/collector/compose.yml",
            "opt/platform/collector/docker-api-ro.conf",
            "opt/platform/bin/runner-disk-cleanup",
            "etc/systemd/system/runner-disk-cleanup-pressure.timer",
            "usr/local/share/ca-certificates/platform-ca.crt",
        ]:
            assert (render.host(host) / path).is_file(), f"{host}: {path}"


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_no_secret_outside_secret_files_and_secret_files_are_0600(
    renders: dict[str, Render], inventory: str
) -> None:
    render = renders[inventory]
    values = secret_values(render.secrets)
    assert len(values) > 20
    holders: dict[str, list[str]] = {}
    for path in files(render.dest):
        content = path.read_bytes().decode(errors="replace")
        for name, value in values.items():
            if value in content:
                holders.setdefault(str(path.relative_to(render.dest)), []).append(name)
    assert holders, "no rendered file holds a secret: the check would prove nothing"
    leaks = {path: names for path, names in holders.items() if mode(render.dest / path) != 0o600}
    assert leaks == {}
    for path in files(render.dest):
        relative = str(path.relative_to(render.dest))
        if path.suffix in {".env", ".key"} or path.name in {"config.toml", "htpasswd"}:
            assert mode(path) == 0o600, relative


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_compose_files_follow_the_compose_specification(
    renders: dict[str, Render], inventory: str
) -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    found = compose_files(renders[inventory])
    assert len(found) == 1 + len(RUNNER_HOSTS[inventory])
    for path in found:
        document = yaml.safe_load(path.read_text())
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
        assert errors == [], path
        for name, service in document["services"].items():
            assert not service.get("privileged", False), name
            if "jobs" in service.get("profiles", []):
                continue
            check = service.get("healthcheck", {})
            # oauth2-proxy's image has no shell and no HTTP client to probe itself with; while it
            # is down nginx's auth_request fails closed (500) on the pages it guards.
            if name != "oauth2-proxy":
                assert check.get("test"), f"{path}: {name}"
            assert not check.get("disable"), f"{path}: {name}"
            socket_mounts = [v for v in service.get("volumes", []) if "docker.sock" in str(v)]
            # The collector's read-only proxy, and the hub, which starts the users' containers.
            assert not socket_mounts or name in {"docker-api-ro", "jupyterhub"}, name


def test_gitlab_is_gated_on_its_readiness_endpoint(example_render: Render) -> None:
    compose = yaml.safe_load(
        (example_render.host("svc-01") / "opt/platform/compose/compose.yml").read_text()
    )
    gitlab = compose["services"]["gitlab"]
    assert "/-/readiness" in " ".join(gitlab["healthcheck"]["test"])
    assert int(gitlab["healthcheck"]["start_period"].rstrip("s")) >= 300
    assert gitlab["environment"]["GITLAB_OMNIBUS_CONFIG"] == "from_file('/omnibus_config.rb')"
    assert compose["services"]["bridge-reconcile"]["command"][0] == "reconcile"
    bridge = compose["services"]["bridge"]
    assert bridge["environment"]["BRIDGE_JWKS_URL"] == "http://gitlab/oauth/discovery/keys"
    assert bridge["environment"]["BRIDGE_PUBLIC_URL"] == "https://bridge.ml.example.org"
    omnibus = (example_render.host("svc-01") / "opt/platform/gitlab/omnibus_config.rb").read_text()
    for setting in [
        "external_url 'https://gitlab.ml.example.org'",
        "registry_external_url 'https://registry.ml.example.org'",
        "gitlab_rails['nginx']['listen_https'] = false",
        "gitlab_rails['trusted_proxies'] = ['172.30.0.0/24']",
        "gitlab_rails['monitoring_whitelist']",
        "gitlab_rails['webhook_timeout'] = 10",
        "prometheus_monitoring['enable'] = false",
        "puma['worker_processes'] = 4",  # 32 GB declared: the large profile
    ]:
        assert setting in omnibus


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_every_image_is_pinned_by_digest(renders: dict[str, Render], inventory: str) -> None:
    render = renders[inventory]
    built = 0
    for path in compose_files(render):
        for name, service in yaml.safe_load(path.read_text())["services"].items():
            if "build" in service:
                built += 1
                assert DIGEST.match(service["build"]["args"]["BASE_IMAGE"]), f"{path}: {name}"
                continue
            assert DIGEST.match(service["image"]), f"{path}: {name}: {service['image']}"
    assert built >= 2
    dockerfiles = [p for p in files(render.dest) if p.name == "Dockerfile"]
    assert dockerfiles
    for path in dockerfiles:
        # Bases come from the lock as the BASE_IMAGE build argument, never from a pin here.
        assert re.findall(r"^FROM\s+(\S+)", path.read_text(), flags=re.MULTILINE) == [
            "${BASE_IMAGE}"
        ], path


def runner_config(render: Render, host: str) -> dict:
    return tomllib.loads((render.host(host) / "etc/gitlab-runner/config.toml").read_text())


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_runner_config_is_safe_and_has_its_cache(
    renders: dict[str, Render], inventory: str
) -> None:
    render = renders[inventory]
    for host in RUNNER_HOSTS[inventory]:
        config = runner_config(render, host)
        assert config["concurrent"] >= 1
        names = [runner["name"] for runner in config["runners"]]
        assert len(names) == len(set(names))
        for runner in config["runners"]:
            docker = runner["docker"]
            assert runner["executor"] == "docker"
            assert docker["privileged"] is False
            assert docker["services_privileged"] is False
            assert not any("docker.sock" in volume for volume in docker["volumes"])
            registry = "registry." + runner["url"].split("://gitlab.", 1)[1] + "/"
            assert docker["allowed_images"]
            assert all(image.startswith(registry) for image in docker["allowed_images"])
            assert float(docker["cpus"]) > 0
            assert docker["memory"].endswith("m")
            assert 1 <= runner["request_concurrency"] <= runner["limit"] <= config["concurrent"]
            cache = runner["cache"]
            assert cache["Type"] == "s3"
            assert cache["Shared"] is True
            s3 = cache["s3"]
            assert s3["ServerAddress"].startswith("minio.")
            assert s3["Insecure"] is False
            assert s3["BucketName"] == "runner-cache"
            assert s3["AccessKey"] == "runner-cache"
            assert s3["SecretKey"] == (render.secrets / "minio/runner_cache_secret_key").read_text()


def test_gpu_host_gets_one_single_gpu_runner_per_gpu(example_render: Render) -> None:
    config = runner_config(example_render, "gpu-01")
    gpu = [r for r in config["runners"] if "gpus" in r["docker"]]
    assert [r["docker"]["gpus"] for r in gpu] == ["device=0", "device=1"]
    assert all(r["limit"] == 1 for r in gpu)
    cpu = [r for r in config["runners"] if "gpus" not in r["docker"]]
    assert config["concurrent"] == max(r["limit"] for r in cpu) + len(gpu)
    assert "gpus" not in str(runner_config(example_render, "runner-01"))


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_nginx_accepts_the_rendered_configurations(
    renders: dict[str, Render], inventory: str, tmp_path: Path
) -> None:
    render = renders[inventory]
    configs = [render.host(SERVICE_HOSTS[inventory]) / "opt/platform/nginx/nginx.conf"]
    configs += [
        render.host(host) / "opt/platform/collector/docker-api-ro.conf"
        for host in RUNNER_HOSTS[inventory]
    ]
    for config in configs:
        done = subprocess.run(
            [
                "nginx",
                "-t",
                "-p",
                str(tmp_path),
                "-e",
                str(tmp_path / "error.log"),
                "-c",
                str(config),
                # The collector's proxy names its own pid file (/tmp, as its unprivileged user).
                *([] if "\npid " in config.read_text() else ["-g", f"pid {tmp_path}/nginx.pid;"]),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert "test is successful" in done.stderr


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_rendered_scripts_pass_shellcheck(renders: dict[str, Render], inventory: str) -> None:
    render = renders[inventory]
    scripts = [
        p
        for p in files(render.dest)
        if p.parent.name == "bin" and p.read_text().startswith("#!/usr/bin/env bash")
    ]
    assert len(scripts) >= 3
    done = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_rates_file_is_the_bridge_format(example_render: Render) -> None:
    rates = yaml.safe_load(
        (example_render.host("svc-01") / "opt/platform/bridge/rates.yml").read_text()
    )
    assert rates == {
        "currency": "EUR",
        "classes": [
            {"name": "gpu", "match_tags": ["gpu"], "per_minute": "0.50"},
            {"name": "standard", "match_tags": [], "per_minute": "0.02"},
        ],
        "clients": {"acme-vision": "acme"},
    }


def test_env_files_hold_what_the_services_read(example_render: Render) -> None:
    env_dir = example_render.host("svc-01") / "opt/platform/env"

    def read(name: str) -> dict[str, str]:
        lines = (env_dir / name).read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))

    bridge = read("bridge.env")
    assert set(bridge) == {
        "BRIDGE_DATABASE_URL",
        "BRIDGE_WEBHOOK_TOKEN",
        "BRIDGE_WEBHOOK_SIGNING_KEY",
        "BRIDGE_ADMIN_TOKEN",
        "BRIDGE_GITLAB_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "BRIDGE_DATASETS_BUCKET",
    }
    # The dataset store: MinIO's datasets bucket through its writer account.
    assert bridge["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert bridge["AWS_ACCESS_KEY_ID"] == "datasets-writer"
    assert bridge["BRIDGE_DATASETS_BUCKET"] == "datasets"
    assert bridge["BRIDGE_WEBHOOK_SIGNING_KEY"].startswith("whsec_")
    assert bridge["BRIDGE_GITLAB_TOKEN"].startswith("glpat-")
    assert read("mlflow.env")["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg://mlflow:")
    plan = json.loads(
        (example_render.host("svc-01") / "opt/platform/minio/bootstrap.json").read_text()
    )
    assert {a["access_key"] for a in plan["accounts"]} == {
        "mlflow",
        "runner-cache",
        "backup",
        "datasets-reader",
        "datasets-writer",
    }
    minio_env = read("minio-bootstrap.env")
    assert all(account["secret_env"] in minio_env for account in plan["accounts"])
    expiring = {b["name"]: b["expire_days"] for b in plan["buckets"]}
    assert expiring == {
        "mlflow-artifacts": None,
        "runner-cache": 14,
        "datasets": None,
        "platform-backups": 30,
    }


def test_backup_uploader_can_read_the_root_only_staging_folder(example_render: Render) -> None:
    """The staging folder is root's, mode 0700 (the backup script's umask 077); the uploader runs
    in the MLflow image, whose default user is unprivileged, so it must run as root (the converge
    test's `make backup` failed with `Permission denied: '/backup/<stamp>'` before)."""
    host = example_render.host("svc-01")
    uploader = yaml.safe_load((host / "opt/platform/compose/compose.yml").read_text())["services"][
        "backup-upload"
    ]
    dockerfile = (host / "opt/platform/mlflow/Dockerfile").read_text()
    assert re.search(r"^USER [1-9]", dockerfile, re.MULTILINE)
    assert uploader["user"] == "0:0"
    staging = next(v for v in uploader["volumes"] if v.split(":")[1] == "/backup")
    assert staging.endswith(":ro")
    assert "umask 077" in (host / "opt/platform/bin/platform-backup").read_text()
