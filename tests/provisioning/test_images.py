"""Images pinned for real: `ansible/scripts/images.py` (`make images-lock`, `make images-mirror`,
`ref`) against real registries on loopback (Debian's docker-registry) holding multi-architecture
images built here, and the deploy's use of the lock (first play, mirror, build bases)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from local.ports import free_port
from tests.fixtures.provisioning import REPO, ansible_playbook, make
from tests.fixtures.registry import (
    OCI_INDEX,
    OCI_MANIFEST,
    ImageLock,
    images_py,
    push_image,
    registry_path,
    running_registry,
    versions_images,
)

REF = re.compile(r"^\S+@sha256:[0-9a-f]{64}$")
UNLOCKED = (
    "has no locked digest in {lock}: run 'make images-lock' on a controller with registry access"
)


# Services built on another base than `python`: MLflow and its one-shot jobs need Python >= 3.12
# (mlflow-oidc-auth), so they are built on `mlflow_python`.
BUILD_BASES = {
    "mlflow": "mlflow_python",
    "minio-bootstrap": "mlflow_python",
    "backup-upload": "mlflow_python",
}


def served_digest(registry: str, path: str, reference: str) -> str:
    """The registry's own answer: Docker-Content-Digest of a HEAD on the manifest."""
    done = subprocess.run(
        [
            "curl",
            "-sfI",
            "-H",
            f"Accept: {OCI_INDEX}, {OCI_MANIFEST}",
            f"http://{registry}/v2/{path}/manifests/{reference}",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    headers = dict(line.split(": ", 1) for line in done.stdout.strip().splitlines()[1:])
    return headers["Docker-Content-Digest"].strip()


def manifest(registry: str, path: str, reference: str) -> dict:
    answer = httpx.get(
        f"http://{registry}/v2/{path}/manifests/{reference}", headers={"Accept": OCI_INDEX}
    )
    answer.raise_for_status()
    return answer.json()


def lock_entries(path: Path) -> dict[str, dict[str, str]]:
    return yaml.safe_load(path.read_text())["images"]


# ---- images.py against real registries -----------------------------------------------------


def test_lock_records_the_index_digest_the_registry_serves(image_lock: ImageLock) -> None:
    entries = lock_entries(image_lock.path)
    assert set(entries) == set(versions_images())
    for name, reference in versions_images().items():
        path, tag = registry_path(reference)
        served = served_digest(image_lock.registry, path, tag)
        assert entries[name]["digest"] == served == image_lock.pushed[name], name
        assert entries[name]["reference"] == reference
        assert entries[name]["resolved_from"] == f"{image_lock.registry}/{path}:{tag}"
        # The digest is the multi-architecture index's, not one architecture's manifest.
        index = manifest(image_lock.registry, path, served)
        assert index["mediaType"] == OCI_INDEX
        assert {m["platform"]["architecture"] for m in index["manifests"]} == {"amd64", "arm64"}


def test_lock_follows_a_moved_tag_and_keeps_the_other_entries(tmp_path: Path) -> None:
    with running_registry(tmp_path / "registry") as registry:
        path, tag = registry_path(versions_images()["nginx"])
        first = push_image(registry, path, tag, content="release one")
        lock = tmp_path / "lock.yml"
        assert (
            images_py(
                "lock", "--from-registry", registry, "--lock", str(lock), "--only", "nginx"
            ).returncode
            == 0
        )
        assert lock_entries(lock)["nginx"]["digest"] == first
        assert "UNRESOLVED" in lock.read_text()  # the other images have no digest yet
        moved = push_image(registry, path, tag, content="release two")
        assert moved != first
        assert (
            images_py(
                "lock", "--from-registry", registry, "--lock", str(lock), "--only", "nginx"
            ).returncode
            == 0
        )
        assert lock_entries(lock)["nginx"]["digest"] == moved == served_digest(registry, path, tag)


def test_lock_of_a_tag_the_registry_lacks_fails_and_writes_nothing(tmp_path: Path) -> None:
    with running_registry(tmp_path / "registry") as registry:
        lock = tmp_path / "lock.yml"
        done = images_py(
            "lock", "--from-registry", registry, "--lock", str(lock), "--only", "postgres"
        )
        assert done.returncode == 1
        assert len(done.stderr.strip().splitlines()) == 1
        assert "library/postgres" in done.stderr
        assert not lock.exists()


def test_mirror_copies_every_locked_image_with_its_digests(
    image_lock: ImageLock, tmp_path: Path
) -> None:
    with running_registry(tmp_path / "mirror") as mirror:
        done = images_py(
            "mirror",
            "--to",
            mirror,
            "--from-registry",
            image_lock.registry,
            "--lock",
            str(image_lock.path),
        )
        assert done.returncode == 0, done.stderr
        entries = lock_entries(image_lock.path)
        for name, reference in versions_images().items():
            path, tag = registry_path(reference)
            digest = entries[name]["digest"]
            # Copied by digest, kept under its tag too; every architecture came along.
            assert served_digest(mirror, path, digest) == digest
            assert served_digest(mirror, path, tag) == digest
            for child in manifest(mirror, path, digest)["manifests"]:
                assert served_digest(mirror, path, child["digest"]) == child["digest"]
            assert f"{name}: {mirror}/{path}@{digest}" in done.stdout


def test_mirror_refuses_an_unresolved_lock_before_copying(tmp_path: Path) -> None:
    done = images_py(
        "mirror", "--to", "127.0.0.1:9", "--lock", str(REPO / "ansible/images.lock.yml")
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "has no locked digest" in done.stderr


def test_ref_prints_the_pull_reference_with_or_without_a_mirror(image_lock: ImageLock) -> None:
    digest = lock_entries(image_lock.path)["nginx"]["digest"]
    plain = images_py("ref", "nginx", "--lock", str(image_lock.path))
    assert plain.returncode == 0
    assert plain.stdout == f"nginx@{digest}\n"
    mirrored = images_py(
        "ref", "nginx", "--lock", str(image_lock.path), "--mirror", "registry.lab:5000"
    )
    assert mirrored.stdout == f"registry.lab:5000/library/nginx@{digest}\n"
    gitlab = images_py(
        "ref", "gitlab", "--lock", str(image_lock.path), "--mirror", "registry.lab:5000"
    )
    assert gitlab.stdout.startswith("registry.lab:5000/gitlab/gitlab-ce@sha256:")


def test_ref_refuses_an_unlocked_image_in_one_line(tmp_path: Path, image_lock: ImageLock) -> None:
    committed = REPO / "ansible/images.lock.yml"
    done = images_py("ref", "nginx")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == f"image 'nginx' {UNLOCKED.format(lock=committed)}\n"
    # An entry resolved for another tag than versions.yml names counts as missing.
    stale = tmp_path / "stale.yml"
    entries = lock_entries(image_lock.path)
    entries["nginx"]["reference"] = "nginx:0.0.1"
    stale.write_text(yaml.safe_dump({"images": entries}))
    done = images_py("ref", "nginx", "--lock", str(stale))
    assert (done.returncode, done.stderr) == (1, f"image 'nginx' {UNLOCKED.format(lock=stale)}\n")
    unknown = images_py("ref", "no-such-image", "--lock", str(image_lock.path))
    assert unknown.returncode == 1
    assert "no image 'no-such-image' in versions.yml" in unknown.stderr


@pytest.mark.parametrize("mirror", ["http://registry:5000", "registry:5000/path", "a b", "-x"])
def test_a_malformed_mirror_is_refused(mirror: str, image_lock: ImageLock) -> None:
    done = images_py("ref", "nginx", "--lock", str(image_lock.path), "--mirror", mirror)
    assert done.returncode == 2
    assert "HOST:PORT" in done.stderr or "expected one argument" in done.stderr


def test_versions_name_tags_only_and_the_committed_lock_holds_no_digest() -> None:
    for name, reference in versions_images().items():
        assert "@" not in reference, name
        assert re.fullmatch(r"[a-z0-9./_-]+:[A-Za-z0-9._-]+", reference), name
    committed = REPO / "ansible/images.lock.yml"
    assert lock_entries(committed) == {}
    assert "UNRESOLVED" in committed.read_text()
    assert "make images-lock" in committed.read_text()
    assert not re.search(r"sha256:[0-9a-f]{64}", committed.read_text())
    # The build bases come from the lock as build arguments: no second pin.
    for dockerfile in [
        REPO / "bridge/Dockerfile",
        REPO / "ansible/roles/mlflow/templates/Dockerfile.j2",
    ]:
        text = dockerfile.read_text()
        assert re.search(r"^ARG BASE_IMAGE$", text, re.M), dockerfile
        assert re.findall(r"^FROM\s+(\S+)", text, re.M) == ["${BASE_IMAGE}"], dockerfile


def test_make_targets_are_listed_and_the_mirror_target_needs_a_mirror() -> None:
    listed = make("help").stdout
    assert "images-lock" in listed
    assert "images-mirror" in listed
    missing = make("images-mirror")
    assert missing.returncode != 0
    assert "Set MIRROR=host:port" in missing.stderr


# ---- The deploy's side: first play, inventory overrides, mirror -----------------------------


@dataclass(frozen=True)
class Site:
    inventory: Path
    secrets: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """A copy of the single-host inventory with its own secrets."""
    base = tmp_path_factory.mktemp("site")
    inventory = base / "inventory"
    shutil.copytree(REPO / "ansible/inventories/single-host", inventory)
    made = make("secrets", f"INVENTORY={inventory}", f"SECRETS={base / 'secrets'}")
    assert made.returncode == 0, made.stdout + made.stderr
    return Site(inventory, base / "secrets")


def preflight(
    site: Site, inventory: Path | None = None, **settings: str
) -> subprocess.CompletedProcess[str]:
    extra = {"platform_secrets_dir": str(site.secrets), "platform_render": "true", **settings}
    return ansible_playbook(inventory or site.inventory, "playbooks/preflight.yml", extra)


def one_line_message(log: str) -> str:
    """The `msg:` of the failed task, unwrapped from the YAML callback's folding."""
    block = log.split("msg:", 1)[1].split("\n\n", 1)[0].split("PLAY RECAP", 1)[0]
    return " ".join(block.split()).strip("'").replace("''", "'")


def test_first_play_passes_with_a_resolved_lock(site: Site, image_lock: ImageLock) -> None:
    done = preflight(site, platform_images_lock=str(image_lock.path))
    assert done.returncode == 0, done.stdout[-3000:]


def test_first_play_refuses_an_image_without_a_locked_digest(
    site: Site, image_lock: ImageLock, tmp_path: Path
) -> None:
    partial = tmp_path / "partial.yml"
    entries = lock_entries(image_lock.path)
    del entries["postgres"]
    partial.write_text(yaml.safe_dump({"images": entries}))
    done = preflight(site, platform_images_lock=str(partial))
    assert done.returncode != 0
    assert one_line_message(done.stdout) == f"image 'postgres' {UNLOCKED.format(lock=partial)}"
    # No host task ran: the first play stopped everything.
    assert "Set up the service host" not in done.stdout
    # The committed lock is unresolved: a deploy from a fresh clone refuses the same way.
    fresh = preflight(site)
    assert fresh.returncode != 0
    assert "have no locked digest in" in fresh.stdout
    assert "'gitlab', 'nginx', 'postgres', 'minio', 'python'" in one_line_message(fresh.stdout)


def test_an_inventory_overrides_versions_yml(
    site: Site, image_lock: ImageLock, tmp_path: Path
) -> None:
    inventory = tmp_path / "inventory"
    shutil.copytree(site.inventory, inventory)
    images = dict(versions_images(), nginx="nginx:1.29.0-bookworm")
    (inventory / "group_vars/all/images.yml").write_text(
        yaml.safe_dump({"platform_images": images})
    )
    done = preflight(site, platform_images_lock=str(image_lock.path), inventory=inventory)
    # The lock was resolved for versions.yml's nginx tag, so the inventory's tag has no digest.
    assert done.returncode != 0
    assert one_line_message(done.stdout) == f"image 'nginx' {UNLOCKED.format(lock=image_lock.path)}"


def test_first_play_stays_on_the_controller_when_the_inventory_sets_a_connection(
    site: Site, image_lock: ImageLock, tmp_path: Path
) -> None:
    inventory = tmp_path / "inventory"
    shutil.copytree(site.inventory, inventory)
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    # An SSH target on a loopback port where nothing listens: any task sent there fails.
    hosts["all"]["vars"].update(
        ansible_connection="ssh",
        ansible_host="127.0.0.1",
        ansible_port=free_port(),
        ansible_become=True,
    )
    hosts["all"]["children"]["service_hosts"]["hosts"]["platform-01"].pop("ansible_host")
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    done = preflight(site, platform_images_lock=str(image_lock.path), inventory=inventory)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "UNREACHABLE" not in done.stdout


@pytest.fixture(scope="module")
def mirrored_render(
    site: Site, image_lock: ImageLock, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    base = tmp_path_factory.mktemp("mirrored")
    inventory = base / "inventory"
    shutil.copytree(site.inventory, inventory)
    (inventory / "group_vars/all/mirror.yml").write_text(
        "platform_registry_mirror: registry.lab:5000\n"
        "docker_engine_insecure_registries: [registry.lab:5000]\n"
    )
    dest = base / "rendered"
    done = make(
        "render",
        f"INVENTORY={inventory}",
        f"SECRETS={site.secrets}",
        f"DEST={dest}",
        f"IMAGES_LOCK={image_lock.path}",
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr
    return dest / "platform-01"


def test_a_mirror_reaches_every_pull_build_base_and_the_runners(
    mirrored_render: Path, image_lock: ImageLock
) -> None:
    def ref(name: str) -> str:
        done = images_py(
            "ref", name, "--lock", str(image_lock.path), "--mirror", "registry.lab:5000"
        )
        assert done.returncode == 0
        return done.stdout.strip()

    services = yaml.safe_load((mirrored_render / "opt/platform/compose/compose.yml").read_text())[
        "services"
    ]
    pulled = {s["image"] for s in services.values() if "build" not in s}
    assert pulled == {ref(n) for n in ("gitlab", "nginx", "postgres", "minio", "oauth2_proxy")}
    built = {name: s["build"] for name, s in services.items() if "build" in s}
    assert built
    for name, build in built.items():
        assert build["args"] == {"BASE_IMAGE": ref(BUILD_BASES.get(name, "python"))}, name
    collector = yaml.safe_load((mirrored_render / "opt/platform/collector/compose.yml").read_text())
    assert collector["services"]["docker-api-ro"]["image"] == ref("nginx")
    assert collector["services"]["collector"]["build"]["args"] == {"BASE_IMAGE": ref("python")}
    # A mirror without TLS: Docker is told to pull from it over plain HTTP.
    daemon = json.loads((mirrored_render / "etc/docker/daemon.json").read_text())
    assert daemon["insecure-registries"] == ["registry.lab:5000"]
    runner = (mirrored_render / "etc/gitlab-runner/config.toml").read_text()
    assert '"registry.lab:5000/**"' in re.search(r"allowed_images = (.*)", runner)[1]
    assert '"registry.lab:5000/**"' in re.search(r"allowed_services = (.*)", runner)[1]


def test_without_a_mirror_images_come_by_locked_digest_from_their_registries(
    example_render, image_lock: ImageLock
) -> None:
    compose = example_render.host("svc-01") / "opt/platform/compose/compose.yml"
    services = yaml.safe_load(compose.read_text())["services"]
    for name, service in services.items():
        if "build" in service:
            base = BUILD_BASES.get(name, "python")
            assert (
                service["build"]["args"]["BASE_IMAGE"]
                == images_py("ref", base, "--lock", str(image_lock.path)).stdout.strip()
            ), name
            continue
        assert REF.match(service["image"]), name
        assert "registry.lab" not in service["image"]
    runner = (example_render.host("runner-01") / "etc/gitlab-runner/config.toml").read_text()
    assert re.search(r"allowed_images = (.*)", runner)[1] == '["registry.ml.example.org/**"]'
    daemon = json.loads((example_render.host("svc-01") / "etc/docker/daemon.json").read_text())
    assert "insecure-registries" not in daemon
