"""The environment images: what can be checked without building them (no registry here).

hadolint on every Dockerfile, pinned versions and hashed locks, OCI labels, a non-root user,
no secret in any layer, a hardened sshd configuration, and the dev entrypoint (shellcheck, and
its validation run for real in `--check` mode).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENVIRONMENTS = REPO / "environments"
DOCKERFILES = sorted(ENVIRONMENTS.glob("*/Dockerfile"))
LOCKS = sorted(ENVIRONMENTS.glob("*/requirements.lock"))
HADOLINT = REPO / ".venv" / "bin" / "hadolint"
ENTRYPOINT = ENVIRONMENTS / "dev" / "entrypoint.sh"
PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtestkeytestkeytestkeytestkeytestkeytestkey me@laptop"
)
TOKEN = "0123456789abcdef0123456789abcdef"


def _ids(paths: list[Path]) -> list[str]:
    return [p.parent.name for p in paths]


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    pairs = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def test_there_are_the_two_environments() -> None:
    assert _ids(DOCKERFILES) == ["dev", "python-ml"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=_ids(DOCKERFILES))
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    done = subprocess.run(
        [str(HADOLINT), "--format", "json", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert json.loads(done.stdout or "[]") == []
    assert done.returncode == 0


def test_hadolint_would_catch_an_unpinned_package(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:12.8\nRUN apt-get update && apt-get install -y curl\n")
    done = subprocess.run([str(HADOLINT), "--format", "json", str(bad)], capture_output=True)
    codes = {finding["code"] for finding in json.loads(done.stdout)}
    assert {"DL3008", "DL3009", "DL3015"} <= codes


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=_ids(DOCKERFILES))
def test_the_base_is_a_build_argument_without_default(dockerfile: Path) -> None:
    """The base arrives by digest (the image lock, or python-ml's digest for dev); an image
    built without it fails instead of falling back to some tag."""
    instructions = _instructions(dockerfile)
    first_from = next(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    assert [args for word, args in instructions if word == "FROM"] == ["${BASE_IMAGE}"]
    assert ("ARG", "BASE_IMAGE") in instructions[:first_from], "declared with no default"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=_ids(DOCKERFILES))
def test_no_moving_dockerfile_frontend(dockerfile: Path) -> None:
    """`# syntax=` would fetch a frontend image by tag at build time."""
    assert not re.search(r"^#\s*syntax\s*=", dockerfile.read_text(), re.M | re.I)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=_ids(DOCKERFILES))
def test_apt_pins_nothing_debian_will_drop(dockerfile: Path) -> None:
    """Debian's mirrors drop superseded versions: a pinned version is a future build failure,
    unless the packages come from snapshot.debian.org at a fixed date."""
    text = dockerfile.read_text()
    from_snapshot = re.search(r"snapshot\.debian\.org/archive/debian/\d{8}T\d{6}Z", text)
    for _, args in _instructions(dockerfile):
        for command in args.split("&&"):
            if "apt-get install" in command:
                packages = [w for w in command.split("install", 1)[1].split() if w[0] != "-"]
                assert packages
                pinned = [p for p in packages if "=" in p]
                assert from_snapshot or not pinned, f"pins Debian will drop: {pinned}"


@pytest.mark.parametrize("lock", LOCKS, ids=_ids(LOCKS))
def test_every_locked_package_is_pinned_with_hashes(lock: Path) -> None:
    entries = re.split(r"\n(?=\S)", lock.read_text().strip())
    requirements = [e for e in entries if not e.startswith("#")]
    assert requirements
    for entry in requirements:
        name = entry.split()[0]
        assert re.fullmatch(r"[A-Za-z0-9._-]+(\[[a-z0-9,_-]+\])?==[A-Za-z0-9.+!-]+", name), entry
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), f"{name} has no hash"


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==([^\s\\;]+)", line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


@pytest.mark.parametrize("lock", LOCKS, ids=_ids(LOCKS))
def test_the_lock_holds_exactly_the_requested_versions(lock: Path) -> None:
    requested = _pins(lock.parent / "requirements.in")
    locked = _pins(lock)
    assert requested
    for name, version in requested.items():
        assert locked.get(name) == version, (
            f"{name}: requirements.in {version}, lock {locked.get(name)}"
        )


def test_dev_changes_no_version_that_python_ml_pins() -> None:
    base, dev = (
        _pins(ENVIRONMENTS / "python-ml" / "requirements.lock"),
        _pins(ENVIRONMENTS / "dev" / "requirements.lock"),
    )
    assert {n: v for n, v in dev.items() if n in base and base[n] != v} == {}


def test_python_ml_matches_the_local_mode_venv() -> None:
    """Local mode runs pipelines in .venv: same versions, same results as in the image."""
    requested = _pins(ENVIRONMENTS / "python-ml" / "requirements.in")
    installed = {
        name: metadata.version("mlflow" if name == "mlflow-skinny" else name) for name in requested
    }
    assert installed == requested


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=_ids(DOCKERFILES))
def test_oci_labels(dockerfile: Path) -> None:
    labels = " ".join(args for word, args in _instructions(dockerfile) if word == "LABEL")
    for key in ("title", "description", "source", "revision", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    assert 'revision="${VCS_REF}"' in labels


def test_python_ml_runs_as_a_non_root_user() -> None:
    users = [
        args
        for word, args in _instructions(ENVIRONMENTS / "python-ml" / "Dockerfile")
        if word == "USER"
    ]
    assert users[-1] == "1000:1000"


SECRET_NAME = re.compile(r"(TOKEN|PASSWORD|PASSWD|SECRET|PRIVATE|API_?KEY|ACCESS_KEY)", re.I)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=_ids(DOCKERFILES))
def test_no_secret_is_built_into_a_layer(dockerfile: Path) -> None:
    for word, args in _instructions(dockerfile):
        if word in {"ENV", "ARG"}:
            assert not SECRET_NAME.search(args), f"{word} {args}: secrets arrive at runtime"
        if word in {"COPY", "ADD"}:
            sources = args.split()[:-1]
            for source in sources:
                assert not re.search(
                    r"(\.pem|\.key|id_[a-z0-9]+|authorized_keys|\.env)$", source
                ), source
    for path in dockerfile.parent.rglob("*"):
        if path.is_file():
            assert "-----BEGIN" not in path.read_text(errors="replace"), f"key material in {path}"


def test_ssh_host_keys_from_the_package_never_reach_a_layer() -> None:
    runs = [
        args for word, args in _instructions(ENVIRONMENTS / "dev" / "Dockerfile") if word == "RUN"
    ]
    install = next(run for run in runs if "openssh-server" in run)
    assert "rm -f /etc/ssh/ssh_host_*" in install, "host keys must go in the layer that made them"


def test_jupyter_config_holds_no_token_or_password() -> None:
    config = (ENVIRONMENTS / "dev" / "jupyter_server_config.py").read_text()
    assert not re.search(r"\.(token|password|hashed_password)\s*=", config)


def _sshd_settings() -> dict[str, str]:
    settings = {}
    for line in (ENVIRONMENTS / "dev" / "sshd_config").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, value = line.split(None, 1)
            settings[key.lower()] = value.strip()
    return settings


def test_sshd_allows_public_keys_only_and_no_root() -> None:
    settings = _sshd_settings()
    assert settings["permitrootlogin"] == "no"
    assert settings["passwordauthentication"] == "no"
    assert settings["kbdinteractiveauthentication"] == "no"
    assert settings["permitemptypasswords"] == "no"
    assert settings["authenticationmethods"] == "publickey"
    assert settings["allowusers"] == "scientist"
    # Host keys are made at start, never built in: the entrypoint names them on the command line.
    assert "hostkey" not in settings
    assert "-o HostKey=$host_keys/" in ENTRYPOINT.read_text()
    assert settings["authorizedkeysfile"].startswith("/etc/ssh/authorized_keys/")


def test_entrypoint_passes_shellcheck() -> None:
    done = subprocess.run(
        ["shellcheck", "--severity=style", str(ENTRYPOINT)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout


def _entrypoint(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": os.environ["PATH"], **env}
    return subprocess.run(
        ["sh", str(ENTRYPOINT), "--check"], env=clean, capture_output=True, text=True, check=False
    )


GOOD = {
    "DEV_UID": "1234",
    "DEV_GID": "1234",
    "DEV_SSH_AUTHORIZED_KEYS": PUBLIC_KEY,
    "JUPYTER_TOKEN": TOKEN,
}


def test_entrypoint_accepts_a_complete_configuration() -> None:
    done = _entrypoint(**GOOD)
    assert done.returncode == 0, done.stderr
    assert "configuration ok (user scientist as 1234:1234)" in done.stdout


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DEV_UID": ""}, "DEV_UID must be a numeric id"),
        ({"DEV_GID": "staff"}, "DEV_GID must be a numeric id"),
        ({"DEV_UID": "0"}, "DEV_UID=0: the dev user may not be root"),
        ({"DEV_SSH_AUTHORIZED_KEYS": ""}, "no SSH public key"),
        (
            # Assembled, so no private-key header stands in the repository (secret scanners).
            {"DEV_SSH_AUTHORIZED_KEYS": "-----BEGIN OPENSSH " + "PRIVATE KEY-----\nabc"},
            "holds a private key",
        ),
        ({"DEV_SSH_AUTHORIZED_KEYS": "hello"}, "holds no SSH public key"),
        ({"JUPYTER_TOKEN": ""}, "JUPYTER_TOKEN must be set"),
        ({"JUPYTER_TOKEN": "short"}, "at least 32 characters"),
        ({"DEV_SSHD_PORT": "22; reboot"}, "DEV_SSHD_PORT must be a port number"),
        ({"JUPYTERHUB_API_TOKEN": "t", "DEV_SSH_AUTHORIZED_KEYS": "hello"}, "holds no SSH public"),
    ],
)
def test_entrypoint_refuses_an_unsafe_configuration(change: dict[str, str], message: str) -> None:
    done = _entrypoint(**{**GOOD, **change})
    assert done.returncode == 64
    assert message in done.stderr


def test_under_the_hub_no_jupyter_token_or_ssh_key_is_needed() -> None:
    """The hub authenticates every request; a user without keys in GitLab gets JupyterLab only."""
    hub = {**GOOD, "JUPYTERHUB_API_TOKEN": "from-the-hub", "JUPYTER_TOKEN": ""}
    hub["DEV_SSH_AUTHORIZED_KEYS"] = ""
    done = _entrypoint(**hub)
    assert done.returncode == 0, done.stderr
