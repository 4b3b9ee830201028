"""The service ships no local-mode code: neither the installed `bridge` distribution nor
the build context of its image (`docker build -f bridge/Dockerfile .`) holds any module of
`local/` (the demo and test orchestration, the CI ID-token issuer, the git server)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

from tests.fixtures.docker import DockerDaemon

ROOT = Path(__file__).parents[2]


def test_the_installed_bridge_holds_no_local_mode_module(tmp_path: Path) -> None:
    # Built from a copy of what the distribution is made of: setuptools writes build/ and
    # *.egg-info beside the sources it builds, which must not land in the worktree.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "bridge", source / "bridge",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run(
        [venv / "bin" / "pip", "install", "-q", "--no-deps", "--disable-pip-version-check",
         str(source)],
        check=True, cwd=tmp_path,
    )  # fmt: skip
    shown = subprocess.run(
        [venv / "bin" / "pip", "show", "-f", "bridge"], check=True, capture_output=True, text=True
    ).stdout
    files = [line.strip() for line in shown.split("Files:", 1)[1].splitlines() if line.strip()]
    assert "bridge/api/app.py" in files, shown
    assert not [f for f in files if f.startswith("local/") or "/local/" in f], shown
    # Nothing beside the service package, its metadata and its console script.
    others = [f for f in files if not f.startswith(("bridge/", "bridge-", "../../../bin/"))]
    assert not others, shown
    imported = subprocess.run([venv / "bin" / "python", "-c", "import local"], cwd=tmp_path,
                              capture_output=True, text=True)  # fmt: skip
    assert "No module named 'local'" in imported.stderr


def test_the_bridge_image_build_context_holds_no_local_mode_module(
    docker_daemon: DockerDaemon,
) -> None:
    """What `docker build -f bridge/Dockerfile .` can copy, seen by the real builder: an
    image FROM scratch (nothing to pull) that copies the whole context the repository's
    .dockerignore admits."""
    tag = f"bridge-test/context:{uuid.uuid4().hex[:12]}"
    env = {**os.environ, "DOCKER_HOST": docker_daemon.host}
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, "-f-", "."],
        input=b"FROM scratch\nCOPY . /context/\n", cwd=ROOT, env=env, check=True,
        capture_output=True,
    )  # fmt: skip
    container = docker_daemon.client.containers.create(tag, command=["/none"])
    try:
        exported = b"".join(container.export())
    finally:
        container.remove()
        docker_daemon.client.images.remove(tag)
    with tarfile.open(fileobj=io.BytesIO(exported)) as archive:
        names = [n.removeprefix("context/") for n in archive.getnames() if n.startswith("context/")]
    assert "bridge/api/app.py" in names
    assert "local/__init__.py" not in names
    assert not [n for n in names if n.startswith("local/") or n.startswith("bridge/local")]
    assert not [n for n in names if n.startswith("tests/")]
