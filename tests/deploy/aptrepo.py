"""The local apt repository the test hosts install from (a site's own mirror, as in air-gapped
labs).

It holds exactly the Debian packages the deploy installs that a fresh host lacks (their whole
dependency closure, downloaded with apt itself inside a copy of the host image), Docker as Debian
packages (bookworm's docker.io; Compose v2 and buildx from trixie, which install on bookworm),
and the GitLab Runner substitute package (GitLab's repository is not reachable here). The
repository is signed with a throwaway key, so the roles' key-fingerprint checks run for real.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.deploy import hostimage

SUITE = "bookworm"
# What the roles install (platform_base_packages, community.docker's python3-requests, Docker
# from the distribution). Pinned to a suite where bookworm has no usable package.
PACKAGES = [
    "ca-certificates",
    "curl",
    "gnupg",
    "python3-debian",
    "busybox-static",
    "systemd-timesyncd",
    "rsync",
    "python3-requests",
    "docker.io",
    "docker-compose/trixie",
    "docker-buildx/trixie",
]
RUNNER_SUBSTITUTE = Path(__file__).parent / "substitutes" / "gitlab-runner"
RUNNER_VERSION = "19.4.0-1"


def cache_root() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "platform-deploy-test"


def _recipe_key() -> str:
    runner = hashlib.sha256(
        b"".join(p.read_bytes() for p in sorted(RUNNER_SUBSTITUTE.rglob("*")) if p.is_file())
    ).hexdigest()
    recipe = {"host": hostimage.image_name(), "packages": PACKAGES, "runner": runner, "revision": 2}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def download_closure(pool: Path, packages: list[str]) -> None:
    """apt-get --download-only inside a copy of the host image: the exact missing closure."""
    with tempfile.TemporaryDirectory(prefix="deploytest-aptroot-") as tmp:
        root = Path(tmp)
        cid = subprocess.run(
            ["docker", "create", hostimage.image_name()], check=True, capture_output=True, text=True
        ).stdout.strip()
        try:
            with subprocess.Popen(["docker", "export", cid], stdout=subprocess.PIPE) as export:
                subprocess.run(["tar", "-C", str(root), "-x"], stdin=export.stdout, check=True)
            if export.returncode != 0:
                raise RuntimeError(f"docker export of {hostimage.image_name()} failed")
        finally:
            subprocess.run(["docker", "rm", cid], check=True, capture_output=True)
        shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
        (root / "etc/apt/sources.list.d/trixie.list").write_text(
            "deb http://deb.debian.org/debian trixie main\n"
        )
        # Only packages asked for by suite come from trixie; dependencies resolve in bookworm.
        (root / "etc/apt/preferences.d/trixie").write_text(
            "Package: *\nPin: release n=trixie\nPin-Priority: 100\n"
        )
        subprocess.run(
            ["chroot", str(root), "apt-get", "update", "-qq"], check=True, capture_output=True
        )
        subprocess.run(
            ["chroot", str(root), "apt-get", "install", "--download-only", "-y", "-qq", *packages],
            check=True,
            capture_output=True,
        )
        for deb in (root / "var/cache/apt/archives").glob("*.deb"):
            shutil.copy(deb, pool / deb.name)


def _build_runner_packages(pool: Path) -> None:
    """gitlab-runner and gitlab-runner-helper-images substitutes (see substitutes/gitlab-runner)."""
    for name, files in (("gitlab-runner", True), ("gitlab-runner-helper-images", False)):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / "DEBIAN").mkdir()
            depends = "python3 (>= 3.11), ca-certificates" if files else "gitlab-runner"
            (root / "DEBIAN/control").write_text(
                f"Package: {name}\nVersion: {RUNNER_VERSION}\nArchitecture: amd64\n"
                f"Maintainer: converge test\nDepends: {depends}\n"
                "Description: converge-test substitute for GitLab Runner (not GitLab's)\n"
            )
            if files:
                (root / "usr/bin").mkdir(parents=True)
                shutil.copy(RUNNER_SUBSTITUTE / "gitlab-runner", root / "usr/bin/gitlab-runner")
                (root / "usr/bin/gitlab-runner").chmod(0o755)
                (root / "lib/systemd/system").mkdir(parents=True)
                shutil.copy(
                    RUNNER_SUBSTITUTE / "gitlab-runner.service",
                    root / "lib/systemd/system/gitlab-runner.service",
                )
            subprocess.run(
                [
                    "dpkg-deb",
                    "--root-owner-group",
                    "-b",
                    str(root),
                    str(pool / f"{name}_{RUNNER_VERSION}_amd64.deb"),
                ],
                check=True,
                capture_output=True,
            )


def _index_and_sign(repo: Path, gnupghome: Path) -> str:
    """dists/bookworm/main/binary-amd64 over pool/, signed (InRelease); returns the key's
    fingerprint."""
    gnupghome.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(gnupghome)}
    subprocess.run(
        [
            "gpg",
            "--batch",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            "--quick-gen-key",
            "converge-test-apt",
            "rsa3072",
            "sign",
            "1d",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    listing = subprocess.run(
        ["gpg", "--with-colons", "--list-keys"], env=env, check=True, capture_output=True, text=True
    ).stdout
    fingerprint = next(
        line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")
    )
    (repo / "gpgkey").write_bytes(
        subprocess.run(
            ["gpg", "--armor", "--export"], env=env, check=True, capture_output=True
        ).stdout
    )
    binary = repo / "dists" / SUITE / "main" / "binary-amd64"
    binary.mkdir(parents=True)
    packages = subprocess.run(
        ["apt-ftparchive", "packages", "pool"], cwd=repo, check=True, capture_output=True
    ).stdout
    (binary / "Packages").write_bytes(packages)
    release = subprocess.run(
        [
            "apt-ftparchive",
            "-o",
            f"APT::FTPArchive::Release::Suite={SUITE}",
            "-o",
            f"APT::FTPArchive::Release::Codename={SUITE}",
            "-o",
            "APT::FTPArchive::Release::Components=main",
            "-o",
            "APT::FTPArchive::Release::Architectures=amd64",
            "release",
            f"dists/{SUITE}",
        ],
        cwd=repo,
        check=True,
        capture_output=True,
    ).stdout
    (repo / "dists" / SUITE / "Release").write_bytes(release)
    subprocess.run(
        [
            "gpg",
            "--batch",
            "--yes",
            "--clearsign",
            "-o",
            f"dists/{SUITE}/InRelease",
            f"dists/{SUITE}/Release",
        ],
        cwd=repo,
        env=env,
        check=True,
        capture_output=True,
    )
    return fingerprint


def build() -> tuple[Path, str]:
    """Return (repository folder, signing key fingerprint), building it once per recipe."""
    repo = cache_root() / f"apt-{_recipe_key()}"
    if (repo / "fingerprint").exists():
        return repo, (repo / "fingerprint").read_text().strip()
    staging = Path(
        tempfile.mkdtemp(
            prefix="apt-", dir=cache_root().mkdir(parents=True, exist_ok=True) or cache_root()
        )
    )
    try:
        pool = staging / "repo" / "pool"
        pool.mkdir(parents=True)
        download_closure(pool, PACKAGES)
        _build_runner_packages(pool)
        fingerprint = _index_and_sign(staging / "repo", staging / "gnupg")
        (staging / "repo" / "fingerprint").write_text(fingerprint + "\n")
        shutil.rmtree(repo, ignore_errors=True)
        (staging / "repo").rename(repo)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return repo, fingerprint
