"""The `build-environment` template, with a recording stand-in for rootless BuildKit.

No registry is reachable here, so BuildKit itself cannot run: `buildctl-daemonless.sh` is
replaced by a script that records how the template called it, checks the registry credentials
it was handed, and reports a digest derived from the build context. What is tested is the
template's side: context, labels, build arguments, credentials outside the context, the digest
handed to later jobs as a dotenv variable, and chaining one environment onto another.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tests.fixtures.local_platform import REPO, include

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


def _stand_in(tmp_path: Path) -> tuple[dict[str, str], Path]:
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    builder = bin_dir / "buildctl-daemonless.sh"
    builder.write_text(STAND_IN)
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
    assert f"type=image,name={repository}:{project.sha[:8]},push=true" in args
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
