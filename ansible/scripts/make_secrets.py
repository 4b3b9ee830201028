"""Generate the platform's secrets for one inventory (`make secrets INVENTORY=... SECRETS=...`).

Writes one value per file under the secrets directory (git-ignored), files 0600 and folders
0700, and never overwrites a file that exists: bring your own certificate by putting it at
tls/platform.crt (full chain) and tls/platform.key before running this. Runner tokens
(runners/<host>/<runner>.json) are not made here: the deploy creates them through GitLab's API.

With --example it writes the same tree with fake values (that is how secrets.example/ is made).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ANSIBLE_DIR = Path(__file__).resolve().parent.parent
# Subdomains served by nginx (and postgres-data's TLS name). The roles derive the same names from
# platform_domain; preflight refuses a certificate that does not cover all of them.
SERVICE_NAMES = ("gitlab", "registry", "mlflow", "minio", "console", "bridge", "hub", "postgres")
# One MinIO account per consumer (the minio role gives each a policy on its bucket only).
MINIO_ACCOUNTS = ("mlflow", "runner_cache", "backup", "datasets_reader", "datasets_writer")


def password() -> str:
    return secrets.token_urlsafe(24)


def gitlab_token() -> str:
    return "glpat-" + secrets.token_urlsafe(20)


def signing_key() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def cookie_secret() -> str:
    """32 random bytes, URL-safe base64: oauth2-proxy accepts a 16, 24 or 32 byte secret."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def inventory_facts(inventory: Path) -> tuple[str, list[str]]:
    """The domain and the runner hosts of an inventory, read by ansible-inventory itself."""
    done = subprocess.run(  # noqa: S603 - fixed argv: the venv's own ansible-inventory
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(inventory), "--list"],
        cwd=ANSIBLE_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"ansible-inventory failed for {inventory}:\n{done.stderr}")
    data = json.loads(done.stdout)
    hostvars = data.get("_meta", {}).get("hostvars", {})
    services = data.get("service_hosts", {}).get("hosts", [])
    runners = data.get("runner_hosts", {}).get("hosts", [])
    if len(services) != 1:
        sys.exit(f"{inventory}: the group service_hosts must hold exactly one host")
    domain = hostvars.get(services[0], {}).get("platform_domain", "")
    if not domain:
        sys.exit(f"{inventory}: platform_domain is not set")
    return domain, sorted(runners)


class Writer:
    """Creates files that do not exist yet; reports what it made and what it kept."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: list[str] = []
        self.kept: list[str] = []

    def exists(self, relative: str) -> bool:
        return (self.root / relative).exists()

    def put(self, relative: str, make: Callable[[], str | bytes]) -> None:
        path = self.root / relative
        if path.exists():
            self.kept.append(relative)
            return
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        content = make()
        data = content.encode() if isinstance(content, str) else content
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(path, 0o600)
        self.made.append(relative)

    def read(self, relative: str) -> str:
        return (self.root / relative).read_text().strip()


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_tls(writer: Writer, domain: str) -> None:
    """A private CA and one server certificate for every service name (air-gapped installs)."""
    now = dt.datetime.now(dt.UTC)
    if not writer.exists("ca/ca.key"):
        ca_key = ec.generate_private_key(ec.SECP384R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ML platform"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"ML platform private CA ({domain})"),
            ]
        )
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA384())
        )
        writer.put("ca/ca.key", lambda: _pem_key(ca_key))
        writer.put("ca/ca.crt", lambda: ca_cert.public_bytes(serialization.Encoding.PEM))
    if writer.exists("tls/platform.crt"):
        writer.kept.append("tls/platform.crt")
        return
    ca_key = serialization.load_pem_private_key((writer.root / "ca/ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((writer.root / "ca/ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    names = [f"{service}.{domain}" for service in SERVICE_NAMES]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(
        serialization.Encoding.PEM
    )
    writer.put("tls/platform.key", lambda: _pem_key(key))
    writer.put("tls/platform.crt", lambda: chain)


def generate(writer: Writer, domain: str, runner_hosts: list[str]) -> None:
    make_tls(writer, domain)
    writer.put("gitlab/root_password", password)
    writer.put("gitlab/admin_token", gitlab_token)
    writer.put("gitlab/bridge_token", gitlab_token)
    for name in ("service_superuser", "mlflow", "bridge", "data_superuser"):
        writer.put(f"postgres/{name}_password", password)
    writer.put("minio/root_password", password)
    for account in MINIO_ACCOUNTS:
        writer.put(f"minio/{account}_secret_key", password)
    # Keys of the GitLab logins' sessions (the OAuth clients themselves come from GitLab at
    # deploy time: oauth/<relying party>.json, written by the role identity).
    writer.put("identity/oauth2_proxy_cookie_secret", cookie_secret)
    writer.put("identity/mlflow_secret_key", password)
    writer.put("jupyterhub/crypt_key", lambda: secrets.token_hex(32))
    writer.put("jupyterhub/proxy_token", lambda: secrets.token_hex(32))
    writer.put("bridge/webhook_token", password)
    writer.put("bridge/webhook_signing_key", signing_key)
    writer.put("bridge/admin_token", password)
    for host in runner_hosts:
        writer.put(f"collectors/{host}.token", password)


def generate_example(writer: Writer, runner_hosts: list[str]) -> None:
    """The same tree with fake values: documentation, and what preflight refuses to deploy."""

    def fake(relative: str) -> Callable[[], str]:
        return lambda: f"example-{relative.replace('/', '-')}-not-a-secret\n"

    pem = "-----BEGIN {0}-----\nexample: `make secrets` writes a real one here\n-----END {0}-----\n"
    writer.put("ca/ca.crt", lambda: pem.format("CERTIFICATE"))
    writer.put("ca/ca.key", lambda: pem.format("PRIVATE KEY"))
    writer.put("tls/platform.crt", lambda: pem.format("CERTIFICATE"))
    writer.put("tls/platform.key", lambda: pem.format("PRIVATE KEY"))
    writer.put("gitlab/root_password", fake("gitlab/root_password"))
    writer.put("gitlab/admin_token", lambda: "glpat-example-admin-not-a-token\n")
    writer.put("gitlab/bridge_token", lambda: "glpat-example-bridge-not-a-token\n")
    for name in ("service_superuser", "mlflow", "bridge", "data_superuser"):
        writer.put(f"postgres/{name}_password", fake(f"postgres/{name}_password"))
    writer.put("minio/root_password", fake("minio/root_password"))
    for account in MINIO_ACCOUNTS:
        writer.put(f"minio/{account}_secret_key", fake(f"minio/{account}_secret_key"))
    writer.put("identity/oauth2_proxy_cookie_secret", fake("identity/oauth2_proxy_cookie_secret"))
    writer.put("identity/mlflow_secret_key", fake("identity/mlflow_secret_key"))
    writer.put("jupyterhub/crypt_key", fake("jupyterhub/crypt_key"))
    writer.put("jupyterhub/proxy_token", fake("jupyterhub/proxy_token"))
    writer.put("bridge/webhook_token", fake("bridge/webhook_token"))
    writer.put("bridge/webhook_signing_key", lambda: "whsec_ZXhhbXBsZS1ub3QtYS1zaWduaW5nLWtleQ==\n")
    writer.put("bridge/admin_token", fake("bridge/admin_token"))
    for host in runner_hosts:
        writer.put(f"collectors/{host}.token", fake(f"collectors/{host}.token"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inventory", type=Path, required=True)
    parser.add_argument("--secrets", type=Path, required=True, help="target directory")
    parser.add_argument("--example", action="store_true", help="write fake values")
    args = parser.parse_args(argv)
    domain, runner_hosts = inventory_facts(args.inventory.resolve())
    args.secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
    writer = Writer(args.secrets)
    if args.example:
        generate_example(writer, runner_hosts)
    else:
        generate(writer, domain, runner_hosts)
    print(
        f"secrets in {args.secrets} for *.{domain}: {len(writer.made)} created, "
        f"{len(writer.kept)} kept (existing files are never overwritten)"
    )
    for relative in writer.made:
        print(f"  + {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
