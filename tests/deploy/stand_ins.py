"""Stand-ins for the upstream images, built here (nothing can be pulled on this machine).

Each is built once per recipe on this machine's Docker (classic builder, `--network none`)
from the test host image plus Debian packages (their closure downloaded with apt) or PyPI
wheels, then pushed to a loopback registry under the real repository path and tag of
ansible/versions.yml, so the lock and the mirror work exactly as for a site registry. They
share one base layer, so a host pulls it once. See docs/substitutes.md for what each stands for.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from local.identity.mlflow_oidc import python312
from tests.deploy import aptrepo, hostimage

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent / "substitutes"
# name in versions.yml -> (Debian packages, extra build context files)
DEBIAN_PACKAGES = {
    "nginx": ["nginx"],
    "postgres": ["postgresql-15"],
    "python": ["python3-pip", "python-is-python3"],
    "gitlab": ["curl"],
}
GITLAB_APP = {
    "server.py": HERE / "gitlab/server.py",
    "tests/__init__.py": REPO / "tests/__init__.py",
    "tests/bridge/__init__.py": REPO / "tests/bridge/__init__.py",
    "tests/bridge/gitlab_fake.py": REPO / "tests/bridge/gitlab_fake.py",
    "tests/bridge/payloads.py": REPO / "tests/bridge/payloads.py",
    "local/__init__.py": REPO / "local/__init__.py",
    "local/ports.py": REPO / "local/ports.py",
    "local/issuer.py": REPO / "local/issuer.py",
}


def versions() -> dict:
    return yaml.safe_load((REPO / "ansible/versions.yml").read_text())


def _constraint(name: str) -> str:
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.lower().startswith(name.lower() + "=="):
            return line.split("==", 1)[1].strip()
    raise KeyError(f"{name} is not pinned in constraints.txt")


def wheel_requirements() -> list[str]:
    """What the Dockerfiles built on `python` install (bridge: its runtime requirements below;
    the hub), plus the MinIO stand-in's moto and minio."""
    return [
        *versions()["platform_hub_image_packages"],
        f"moto[server]=={_constraint('moto')}",
        f"minio=={_constraint('minio')}",
        f"setuptools=={_constraint('setuptools')}" if _has("setuptools") else "setuptools>=69",
        "wheel",
    ]


def _signing_pins() -> dict[str, str]:
    """Versions of what the GitLab stand-in signs with, installed from the wheelhouse."""
    return {
        "PYJWT_VERSION": _constraint("pyjwt"),
        "CRYPTOGRAPHY_VERSION": _constraint("cryptography"),
    }


def _has(name: str) -> bool:
    try:
        _constraint(name)
    except KeyError:
        return False
    return True


def _key(*parts: object) -> str:
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path) and not part.is_relative_to(REPO):
            # A cache folder of this module: its name already is the key of its content.
            digest.update(str(part).encode())
        elif isinstance(part, Path):
            files = sorted(p for p in part.rglob("*") if p.is_file()) if part.is_dir() else [part]
            for file in files:
                digest.update(str(file.relative_to(REPO)).encode() + file.read_bytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:12]


def _cached(name: str, key: str, fill) -> Path:
    """A cache folder `name-key`, filled by `fill(folder)` when missing."""
    target = aptrepo.cache_root() / f"{name}-{key}"
    if target.exists():
        return target
    aptrepo.cache_root().mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=aptrepo.cache_root()))
    try:
        fill(staging)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _pip_download(python: str, folder: Path) -> list[str]:
    return [python, "-m", "pip", "download", "-q", "-d", str(folder), "--only-binary=:all:"]


def wheelhouse() -> Path:
    """PyPI wheels for the images built on `python` (bridge, hub) and the MinIO stand-in."""
    requirements = wheel_requirements()
    # The wheels must fit the stand-in's Python 3.11 on Debian 12, as this interpreter does.
    python = (
        sys.executable
        if importlib.util.find_spec("pip")
        else str(Path(sys.base_prefix) / "bin/python3")
    )

    def fill(staging: Path) -> None:
        pip = [*_pip_download(python, staging), "-c", str(REPO / "constraints.txt")]
        subprocess.run([*pip, *requirements], check=True)
        # The bridge's runtime dependencies (its own package is built from source on the host).
        subprocess.run(
            [*pip, "-r", "/dev/stdin"], input=_runtime_requirements(), text=True, check=True
        )

    key = _key(requirements, REPO / "constraints.txt", REPO / "pyproject.toml")
    return _cached("wheels", key, fill)


def wheelhouse_312() -> Path:
    """PyPI wheels for the MLflow image (built on `mlflow_python`, Python 3.12), resolved with
    the lock local mode uses for the same packages (local/identity/mlflow-oidc.lock)."""
    requirements = versions()["platform_mlflow_image_packages"]
    lock = REPO / "local/identity/mlflow-oidc.lock"

    def fill(staging: Path) -> None:
        pip = _pip_download(python312(), staging)
        subprocess.run([*pip, "-c", str(lock), *requirements, "setuptools", "wheel"], check=True)

    return _cached("wheels312", _key(requirements, lock), fill)


def npm_cache() -> Path:
    """An npm cache holding the hub's npm packages and their closure: the python stand-in runs
    npm offline from it, so the hub Dockerfile's `npm install` runs unchanged (no registry)."""
    packages = versions()["platform_hub_npm_packages"]

    def fill(staging: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="npm-") as prefix:
            subprocess.run(
                [
                    "npm",
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--prefix",
                    prefix,
                    "--cache",
                    str(staging),
                    *packages,
                ],
                check=True,
                capture_output=True,
            )

    return _cached("npm", _key(packages), fill)


def python_312_tree() -> Path:
    """This machine's CPython >= 3.12 (the one local mode uses for MLflow) as a folder to copy
    to /usr/local: the stand-in of the python:3.12 image (Debian 12 has only 3.11)."""
    interpreter = Path(python312()).resolve()
    prefix = interpreter.parents[1]

    def fill(staging: Path) -> None:
        with (staging / "python.tar").open("wb") as archive:
            subprocess.run(
                [
                    "tar",
                    "-C",
                    str(prefix),
                    "-c",
                    "--exclude=__pycache__",
                    "--exclude=*.pth",
                    "--exclude=lib/python3.*/test",
                    "--exclude=lib/python3.*/idlelib",
                    "--exclude=lib/python3.*/tkinter",
                    "bin",
                    "lib",
                ],
                stdout=archive,
                check=True,
            )
        (staging / "python").write_text(interpreter.name)

    return _cached("cpython", _key(str(interpreter)), fill)


def _runtime_requirements() -> str:
    project = __import__("tomllib").loads((REPO / "pyproject.toml").read_text())["project"]
    return "\n".join(project["dependencies"]) + "\n"


def _debs(packages: list[str]) -> Path:
    target = aptrepo.cache_root() / f"debs-{_key(hostimage.image_name(), packages)}"
    if not target.exists():
        staging = Path(tempfile.mkdtemp(prefix="staging-", dir=aptrepo.cache_root()))
        try:
            aptrepo.download_closure(staging, packages)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _build(
    tag: str, dockerfile: Path, context_files: dict[str, Path], args: dict[str, str]
) -> None:
    with tempfile.TemporaryDirectory(prefix="standin-") as tmp:
        context = Path(tmp)
        shutil.copy(dockerfile, context / "Dockerfile")
        for name, source in context_files.items():
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, context / name)
            else:
                shutil.copy(source, context / name)
        argv = ["docker", "build", "-q", "--network", "none", "-t", tag]
        for name, value in args.items():
            argv += ["--build-arg", f"{name}={value}"]
        built = subprocess.run([*argv, str(context)], capture_output=True, text=True)
        if built.returncode != 0:
            raise RuntimeError(
                f"building {tag} failed:\n{built.stdout[-3000:]}{built.stderr[-3000:]}"
            )


def _image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


def _build_cached(name: str, context: dict[str, Path], args: dict[str, str]) -> str:
    tag = f"deploytest-standin-{name.replace('_', '-')}:{_key(HERE / name, context, args)}"
    if not _image_exists(tag):
        _build(tag, HERE / name / "Dockerfile", context, args)
    return tag


def build_all() -> dict[str, str]:
    """Local tags of every stand-in, by versions.yml name (built only when missing)."""
    base = hostimage.build()
    tags: dict[str, str] = {}
    for name, packages in DEBIAN_PACKAGES.items():
        extra: dict[str, Path] = {"debs": _debs(packages)}
        if name == "nginx":
            extra["nginx"] = HERE / "nginx/nginx"
        if name == "postgres":
            extra["docker-entrypoint.sh"] = HERE / "postgres/docker-entrypoint.sh"
        if name == "python":
            extra["wheels"] = wheelhouse()
            extra["npm-cache"] = npm_cache()
        if name == "gitlab":
            extra["gitlab-rails"] = HERE / "gitlab/gitlab-rails"
            extra["gitlab-backup"] = HERE / "gitlab/gitlab-backup"
            extra["start"] = HERE / "gitlab/start"
            extra |= {f"app/{k}": v for k, v in GITLAB_APP.items()}
        parent = tags["python"] if name == "gitlab" else base
        # The GitLab stand-in signs ID tokens with PyJWT: its pins are part of its recipe.
        pins = _signing_pins() if name == "gitlab" else {}
        key = _key(parent, HERE / name, packages, *extra.values(), *([pins] if pins else []))
        tag = f"deploytest-standin-{name}:{key}"
        if not _image_exists(tag):
            _build(tag, HERE / name / "Dockerfile", extra, {"BASE": parent, **pins})
        tags[name] = tag
    tags["mlflow_python"] = _build_cached(
        "mlflow_python",
        {"python.tar": python_312_tree() / "python.tar", "wheels": wheelhouse_312()},
        {"BASE": base, "PYTHON": (python_312_tree() / "python").read_text()},
    )
    tags["oauth2_proxy"] = _build_cached(
        "oauth2_proxy", {"oauth2-proxy": HERE / "oauth2_proxy/oauth2-proxy"}, {"BASE": base}
    )
    minio_args = {
        "PYTHON": tags["python"],
        "MOTO_VERSION": _constraint("moto"),
        "MINIO_VERSION": _constraint("minio"),
    }
    tags["minio"] = f"deploytest-standin-minio:{_key(HERE / 'minio', minio_args)}"
    if not _image_exists(tags["minio"]):
        _build(
            tags["minio"], HERE / "minio/Dockerfile", {"minio": HERE / "minio/minio"}, minio_args
        )
    tags["cuda_smoke"] = f"deploytest-standin-cuda:{_key(base, HERE / 'cuda')}"
    if not _image_exists(tags["cuda_smoke"]):
        _build(tags["cuda_smoke"], HERE / "cuda/Dockerfile", {}, {"BASE": base})
    return tags


def repository_path(reference: str) -> str:
    """`nginx:1.2` -> `library/nginx:1.2`, as Docker Hub names it (and as a mirror holds it)."""
    name = reference.split("@")[0]
    first = name.split("/")[0]
    if "/" not in name:
        return f"library/{name}"
    if re.search(r"[.:]", first) or first == "localhost":
        return name.split("/", 1)[1]
    return name


def push_all(registry: str, tags: dict[str, str]) -> list[str]:
    """Push every stand-in to `registry` under its versions.yml repository:tag; return the names."""
    images = versions()["platform_images"]
    pushed = []
    for name, local in tags.items():
        remote = f"{registry}/{repository_path(images[name])}"
        subprocess.run(["docker", "tag", local, remote], check=True)
        subprocess.run(["docker", "push", "-q", remote], check=True, capture_output=True)
        subprocess.run(["docker", "rmi", remote], check=True, capture_output=True)
        pushed.append(name)
    return pushed


DEV_IMAGE = "platform/environments/dev"


def push_dev_image(registry: str, base: str) -> str:
    """The hub's dev image (built by the platform's own CI on a real site): the host image
    pushed as DEV_IMAGE, and its reference by the digest the registry reports."""
    remote = f"{registry}/{DEV_IMAGE}:converge"
    subprocess.run(["docker", "tag", base, remote], check=True)
    subprocess.run(["docker", "push", "-q", remote], check=True, capture_output=True)
    subprocess.run(["docker", "rmi", remote], check=True, capture_output=True)
    digest = subprocess.run(
        [
            "skopeo",
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            f"docker://{remote}",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return digest
