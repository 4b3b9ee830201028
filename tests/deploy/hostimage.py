"""The fresh Debian 12 host image of the converge test, built once and cached by its recipe.

A debootstrap minbase root with only what a fresh server has before any deploy: python3,
systemd as init, sudo, dbus and openssh-server. Nothing the deploy installs is baked in: the
deploy has to install it itself, from the test's local apt repository.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from pathlib import Path

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What a fresh, minimal Debian 12 server has after the installer: nothing more.
INCLUDE = ["python3", "systemd", "systemd-sysv", "sudo", "dbus", "openssh-server"]
RECIPE = {"suite": SUITE, "variant": "minbase", "include": INCLUDE, "revision": 1}
IMAGE_REPO = "deploytest-host"


def image_name() -> str:
    digest = hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:12]
    return f"{IMAGE_REPO}:{digest}"


def image_exists(name: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", name], capture_output=True).returncode == 0


def build(root_parent: Path | None = None) -> str:
    """Return the host image's name, building it with debootstrap when it is missing."""
    name = image_name()
    if image_exists(name):
        return name
    with tempfile.TemporaryDirectory(prefix="deploytest-root-", dir=root_parent) as tmp:
        root = Path(tmp) / "root"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(INCLUDE)}",
                SUITE,
                str(root),
                MIRROR,
            ],
            check=True,
            capture_output=True,
        )
        # A machine-id is created on first boot; an empty file makes systemd generate one.
        (root / "etc/machine-id").write_text("")
        subprocess.run(
            ["rm", "-rf", str(root / "var/cache/apt/archives"), str(root / "var/lib/apt/lists")],
            check=True,
        )
        (root / "var/cache/apt/archives/partial").mkdir(parents=True)
        (root / "var/lib/apt/lists/partial").mkdir(parents=True)
        with subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE) as tar:
            subprocess.run(
                ["docker", "import", "--change", 'CMD ["/sbin/init"]', "-", name],
                stdin=tar.stdout,
                check=True,
                capture_output=True,
            )
        if tar.returncode != 0:
            raise RuntimeError("tar of the host root failed")
    return name
