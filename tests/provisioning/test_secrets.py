"""`make secrets`, secrets.example/, and the first play's refusal of bad secrets."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.fixtures.provisioning import REPO, Render, ansible_playbook, make, tree_digest
from tests.fixtures.registry import ImageLock

EXAMPLE = REPO / "secrets.example"
SERVICES = ["gitlab", "registry", "mlflow", "minio", "console", "bridge", "postgres", "hub"]
# How the roles and templates read a secret: lookup('platform_secret', '<path>'). Paths built
# from variables are covered by the audit log of a render instead.
LITERAL_READ = re.compile(r"""lookup\(\s*['"]platform_secret['"]\s*,\s*['"]([^'"]+)['"]\s*\)""")


def relative_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_make_secrets_writes_private_files_and_never_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "secrets"
    first = make("secrets", "INVENTORY=example", f"SECRETS={target}")
    assert first.returncode == 0, first.stderr
    for path in target.rglob("*"):
        expected = 0o700 if path.is_dir() else 0o600
        assert path.stat().st_mode & 0o777 == expected, path
    before = tree_digest(target)
    (target / "gitlab/root_password").write_text("kept-as-is\n")
    before["gitlab/root_password"] = (before["gitlab/root_password"][0], b"kept-as-is\n")
    (target / "bridge/admin_token").unlink()
    second = make("secrets", "INVENTORY=example", f"SECRETS={target}")
    assert second.returncode == 0, second.stderr
    assert "1 created" in second.stdout
    after = tree_digest(target)
    assert after.pop("bridge/admin_token")[1] != before.pop("bridge/admin_token")[1]
    assert after == before


def test_certificate_names_every_service_and_chains_to_the_ca(example_render: Render) -> None:
    secrets = example_render.secrets
    cert = x509.load_pem_x509_certificates((secrets / "tls/platform.crt").read_bytes())[0]
    names = set(
        cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.DNSName)
    )
    assert names == {f"{service}.ml.example.org" for service in SERVICES}
    key = serialization.load_pem_private_key((secrets / "tls/platform.key").read_bytes(), None)
    assert key.public_key() == cert.public_key()
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", secrets / "ca/ca.crt", secrets / "tls/platform.crt"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    nginx = (example_render.host("svc-01") / "opt/platform/nginx/nginx.conf").read_text()
    served = set(re.findall(r"server_name ([a-z.]+);", nginx))
    assert served
    assert served <= names


def test_secrets_example_mirrors_every_secret_the_roles_read(example_render: Render) -> None:
    mirrored = relative_files(EXAMPLE) - {"README.md"}
    generated = relative_files(example_render.secrets)
    # Runner tokens and OAuth clients are written by the deploy from GitLab's API answers; the
    # MLflow group-sync token is created once by an operator in MLflow (docs/identity.md).
    not_generated = ("runners/", "oauth/", "identity/mlflow_sync_token")
    assert generated == {name for name in mirrored if not name.startswith(not_generated)}
    # Every path a render of the example inventory read (the lookup plugin's audit log) ...
    read = set(example_render.audit.read_text().split())
    assert read
    assert any(name.startswith("runners/") for name in read)
    assert read <= mirrored
    # ... and every path written literally in a role, a template or an nginx template.
    literal = set()
    for path in [*(REPO / "ansible").rglob("*"), *(REPO / "nginx").rglob("*")]:
        if path.is_file() and path.suffix in {".yml", ".j2"}:
            literal |= set(LITERAL_READ.findall(path.read_text()))
    assert len(literal) > 15
    assert literal <= mirrored


def test_first_play_stops_on_missing_or_example_secrets(
    tmp_path: Path, image_lock: ImageLock
) -> None:
    secrets = tmp_path / "secrets"
    shutil.copytree(EXAMPLE, secrets)
    for path in secrets.rglob("*"):
        os.chmod(path, 0o700 if path.is_dir() else 0o600)

    def preflight() -> subprocess.CompletedProcess[str]:
        extra = {
            "platform_secrets_dir": str(secrets),
            "platform_render": "true",
            "platform_images_lock": str(image_lock.path),
        }
        return ansible_playbook("inventories/example", "playbooks/preflight.yml", extra)

    (secrets / "minio/backup_secret_key").unlink()
    missing = preflight()
    assert missing.returncode != 0
    assert "minio/backup_secret_key is missing" in missing.stdout
    shutil.copy(EXAMPLE / "minio/backup_secret_key", secrets / "minio/backup_secret_key")
    os.chmod(secrets / "minio/backup_secret_key", 0o600)
    example = preflight()
    assert example.returncode != 0
    assert "still holds the example value" in example.stdout
