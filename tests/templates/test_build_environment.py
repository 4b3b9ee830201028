"""The `build-environment` template, with a stand-in for rootless BuildKit.

No upstream registry is reachable here, so BuildKit itself (and the base images it would pull)
cannot run: `buildctl-daemonless.sh` is replaced by a script that records how the template
called it and reports a digest. What is tested is the template's side: context, labels, build
arguments, credentials outside the context, the digest handed to later jobs as a dotenv
variable, chaining one environment onto another, and, with a stand-in that really pushes an
image to a real registry on loopback, that every digest a build handed on stays pullable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.fixtures.local_platform import REPO, include
from tests.templates.registry import Registry

STAND_IN = """\
#!/usr/bin/env python3
import hashlib, json, os, pathlib, sys
args = sys.argv[1:]
record = pathlib.Path(os.environ["BUILDKIT_RECORD_DIR"])
value = lambda flag: args[args.index(flag) + 1]
context = next(a.split("=", 1)[1] for a in args if a.startswith("context="))
config = pathlib.Path(os.environ["DOCKER_CONFIG"], "config.json")
name = pathlib.Path(context).name
(record / f"{name}.json").write_text(json.dumps({
    "args": args,
    "docker_config": json.loads(config.read_text()),
    "docker_config_dir": os.environ["DOCKER_CONFIG"],
    "cwd": os.getcwd(),
}))
digest = hashlib.sha256(pathlib.Path(context, "Dockerfile").read_bytes() + repr(args).encode())
pathlib.Path(value("--metadata-file")).write_text(
    json.dumps({"containerimage.digest": "sha256:" + digest.hexdigest()}, indent=2)
)
"""


# Pushes a one-layer OCI image to the `--output` name with skopeo and reports the digest the
# registry stored. The layer holds the build's arguments, so two builds of one commit in two
# jobs differ, as BuildKit images with a build timestamp do.
PUSHING_STAND_IN = """\
#!/usr/bin/env python3
import gzip, hashlib, io, json, pathlib, subprocess, sys, tarfile, tempfile
args = sys.argv[1:]
value = lambda flag: args[args.index(flag) + 1]
output = dict(part.split("=", 1) for part in value("--output").split(","))
layout = pathlib.Path(tempfile.mkdtemp())
blobs = layout / "blobs" / "sha256"
blobs.mkdir(parents=True)
def blob(data):
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": "sha256:" + digest, "size": len(data)}
content = json.dumps(args).encode()
tar = io.BytesIO()
with tarfile.open(fileobj=tar, mode="w") as archive:
    info = tarfile.TarInfo("build-args.json")
    info.size = len(content)
    archive.addfile(info, io.BytesIO(content))
layer = blob(gzip.compress(tar.getvalue(), mtime=0))
config = blob(json.dumps({
    "architecture": "amd64", "os": "linux", "config": {},
    "rootfs": {"type": "layers",
               "diff_ids": ["sha256:" + hashlib.sha256(tar.getvalue()).hexdigest()]},
}).encode())
manifest = blob(json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
}).encode())
(layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
(layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest}]}))
pushed = layout / "digest"
subprocess.run(["skopeo", "copy", "--quiet", "--preserve-digests", "--dest-tls-verify=false",
                "--digestfile", str(pushed), f"oci:{layout}", "docker://" + output["name"]],
               check=True)
pathlib.Path(value("--metadata-file")).write_text(
    json.dumps({"containerimage.digest": pushed.read_text().strip()}, indent=2)
)
"""


def _stand_in(tmp_path: Path, script: str = STAND_IN) -> tuple[dict[str, str], Path]:
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    builder = bin_dir / "buildctl-daemonless.sh"
    builder.write_text(script)
    builder.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "BUILDKIT_RECORD_DIR": str(record)}
    return env, record


def _project(ci_project, tmp_path: Path):
    tree = tmp_path / "tree"
    shutil.copytree(REPO / "environments", tree / "environments")
    ci = {
        "stages": ["build", "check"],
        "include": [
            include(
                "build-environment",
                job_name="build-python-ml",
                environment="python-ml",
                output_variable="PYTHON_ML_IMAGE",
            ),
            include(
                "build-environment",
                job_name="build-dev",
                environment="dev",
                build_args="BASE_IMAGE=$PYTHON_ML_IMAGE JUPYTER_PORT=8888",
                output_variable="DEV_IMAGE",
            ),
        ],
        "build-dev": {"needs": ["build-python-ml"]},
        "check": {
            "stage": "check",
            "needs": ["build-python-ml", "build-dev"],
            "script": ['echo "images: $PYTHON_ML_IMAGE $DEV_IMAGE"'],
        },
    }
    (tree / ".gitlab-ci.yml").write_text(json.dumps(ci))
    project = ci_project(source=tree)
    project.extra_variables.update(
        {"CI_REGISTRY_USER": "gitlab-ci-token", "CI_REGISTRY_PASSWORD": "job-token-value"}
    )
    return project


def test_images_are_built_rootless_and_their_digests_handed_on(ci_project, tmp_path) -> None:
    env, record = _stand_in(tmp_path)
    project = _project(ci_project, tmp_path)

    run = project.run(env=env, report=False)

    assert [r.status for r in run.results] == ["success"] * 3, run.results[-1].output[-3000:]
    python_ml = json.loads((record / "python-ml.json").read_text())
    dev = json.loads((record / "dev.json").read_text())
    handed = run.dotenv("build-python-ml", "build-environment.env")["PYTHON_ML_IMAGE"]
    repository = f"local-registry.127.0.0.1/{project.path}/python-ml"
    assert handed.startswith(f"{repository}@sha256:")
    args = python_ml["args"]
    assert args[:3] == ["build", "--frontend", "dockerfile.v0"]
    assert "context=environments/python-ml" in args
    assert f"label:org.opencontainers.image.revision={project.sha}" in args
    build_job = run.job("build-python-ml").job_id
    assert f"type=image,name={repository}:{project.sha[:8]}-{build_job},push=true" in args
    assert f"build-arg:BASE_IMAGE={handed}" in dev["args"], "dev builds on the python-ml digest"
    assert "build-arg:JUPYTER_PORT=8888" in dev["args"]
    assert f"images: {handed} " in run.job("check").output


def test_registry_credentials_stay_out_of_the_build_context(ci_project, tmp_path) -> None:
    env, record = _stand_in(tmp_path)
    project = _project(ci_project, tmp_path)

    project.run(env=env, report=False)

    python_ml = json.loads((record / "python-ml.json").read_text())
    auths = python_ml["docker_config"]["auths"]
    assert list(auths) == ["local-registry.127.0.0.1"]
    config_dir = Path(python_ml["docker_config_dir"])
    assert not config_dir.is_relative_to(Path(python_ml["cwd"])), "config is outside the context"
    assert not config_dir.exists(), "the throwaway registry config is removed after the build"
    assert not any("job-token-value" in arg for arg in python_ml["args"])


def test_an_unknown_environment_fails_with_a_clear_message(ci_project, tmp_path) -> None:
    env, _ = _stand_in(tmp_path)
    project = ci_project(
        files={"environments/python-ml/Dockerfile": "FROM scratch\n"},
        ci={"include": [include("build-environment", environment="does-not-exist")]},
    )

    job = project.run(env=env, report=False).job("build-environment")

    assert job.status == "failed"
    assert "No Dockerfile in environments/does-not-exist" in job.output


def test_an_image_argument_by_tag_is_refused(ci_project, tmp_path) -> None:
    env, record = _stand_in(tmp_path)
    project = ci_project(
        files={"environments/python-ml/Dockerfile": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"},
        ci={
            "include": [
                include(
                    "build-environment",
                    environment="python-ml",
                    build_args="BASE_IMAGE=python:3.12-slim",
                )
            ]
        },
    )

    job = project.run(env=env, report=False).job("build-environment")

    assert job.status == "failed"
    assert "`BASE_IMAGE=python:3.12-slim` names an image by tag" in job.output
    assert not list(record.iterdir()), "nothing was built"


def test_two_builds_of_one_commit_leave_both_digests_pullable(
    ci_project, tmp_path, registry: Registry
) -> None:
    env, _ = _stand_in(tmp_path, PUSHING_STAND_IN)
    repository = f"{registry.host}/tpl-lab/environments/python-ml"
    project = ci_project(
        files={"environments/python-ml/Dockerfile": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n"},
        ci={
            "include": [
                include("build-environment", environment="python-ml", image_name=repository)
            ]
        },
    )

    handed = []
    for _ in range(2):
        run = project.run(env=env, report=False)
        assert run.job("build-environment").status == "success", run.results[0].output[-3000:]
        handed.append(run.dotenv("build-environment", "build-environment.env")["ENVIRONMENT_IMAGE"])

    first, second = handed
    assert first != second, "two builds, two images"
    assert all(image.startswith(f"{repository}@sha256:") for image in handed)
    registry.garbage_collect()
    assert registry.pullable(first), "the first build's digest survives registry cleanup"
    assert registry.pullable(second)


def test_a_moved_tag_would_lose_the_earlier_digest(tmp_path, registry: Registry) -> None:
    """The control for the test above: what a tag per commit did to the first build."""
    env, _ = _stand_in(tmp_path, PUSHING_STAND_IN)
    tag = f"{registry.host}/tpl-lab/moved:0123abcd"
    digests = []
    for build in ("first", "second"):
        metadata = tmp_path / f"{build}.json"
        subprocess.run(
            [
                str(tmp_path / "bin" / "buildctl-daemonless.sh"),
                "build",
                "--opt",
                f"build-arg:BUILD={build}",
                "--output",
                f"type=image,name={tag},push=true",
                "--metadata-file",
                str(metadata),
            ],
            env={**os.environ, **env},
            check=True,
        )
        digests.append(json.loads(metadata.read_text())["containerimage.digest"])
    repository = tag.rsplit(":", 1)[0]

    registry.garbage_collect()

    assert not registry.pullable(f"{repository}@{digests[0]}")
    assert registry.pullable(f"{repository}@{digests[1]}")
