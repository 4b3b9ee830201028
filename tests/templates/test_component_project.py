"""The templates project's own pipeline (`pipeline-templates/.gitlab-ci.yml`), run by
gitlab-ci-local as GitLab would run it for a version tag: every component tested at the tag's
commit (`$CI_SERVER_FQDN/$CI_PROJECT_PATH/<name>@$CI_COMMIT_SHA`, read from the working tree),
the others in a child pipeline written with the image the first job built, then the release.

BuildKit cannot run here (no upstream registry): the recording stand-in of
test_build_environment builds; every other job runs for real against MLflow, S3 and the bridge.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from local import gcl
from local.issuer import gitlab_claims
from tests.fixtures.local_platform import IMAGE, REPO, TEMPLATE_VERSION, TEMPLATES, TEST_CLIENT
from tests.templates.test_build_environment import STAND_IN

PROJECT_PATH = f"{TEST_CLIENT}/pipeline-templates"
TAG_VARIABLES = ("CI_COMMIT_TAG", "CI_COMMIT_BRANCH", "CI_COMMIT_REF_NAME", "CI_PIPELINE_SOURCE")


def _gcl(
    project: Path, *args: str, variables: dict[str, str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    (project / gcl.VARIABLES_FILE).write_text(json.dumps(variables))
    try:
        done = subprocess.run(
            [gcl.gitlab_ci_local(), "--ignore-predefined-vars", ",".join(TAG_VARIABLES), *args],
            cwd=project,
            capture_output=True,
            text=True,
            env=gcl.job_environment(env),
            timeout=900,
            check=False,
        )
    finally:
        (project / gcl.VARIABLES_FILE).unlink()
    return done


def _source(tag: str | None) -> dict[str, str]:
    """The predefined variables of a push of branch main, or of tag `tag`."""
    ref = {"CI_COMMIT_BRANCH": "main"} if tag is None else {"CI_COMMIT_TAG": tag}
    return {**ref, "CI_COMMIT_REF_NAME": tag or "main", "CI_PIPELINE_SOURCE": "push"}


@pytest.fixture
def templates_project(tmp_path: Path, git_server) -> tuple[Path, str]:
    work = tmp_path / "pipeline-templates"
    sha = gcl.checkout(TEMPLATES, work, f"{git_server.url}/{PROJECT_PATH}.git")
    return work, sha


def test_the_release_job_runs_only_for_a_version_tag(templates_project) -> None:
    project, _ = templates_project
    planned = {}
    for tag in (None, TEMPLATE_VERSION, "nightly"):
        listed = _gcl(project, "--list-json", variables=_source(tag), env={}).stdout
        jobs = json.loads(listed[listed.index("[") :])
        planned[tag] = {job["name"]: job["when"] for job in jobs}
    assert planned[TEMPLATE_VERSION]["create-release"] == "on_success"
    assert planned[None]["create-release"] == "never"
    assert planned["nightly"]["create-release"] == "never"
    assert planned[None]["component-tests"] == "on_success", "every pipeline tests"


def test_a_tag_pipeline_tests_every_component_and_releases(
    templates_project, tmp_path: Path, local_s3, local_mlflow, local_bridge, id_issuer
) -> None:
    project, sha = templates_project
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    builder = bin_dir / "buildctl-daemonless.sh"
    builder.write_text(STAND_IN)
    builder.chmod(0o755)
    record = tmp_path / "record"
    record.mkdir()
    job_id = 990_001
    claims = gitlab_claims(job_id=job_id, project_path=PROJECT_PATH, pipeline_id=99_000, sha=sha)
    variables = {
        **_source(TEMPLATE_VERSION),
        "MLFLOW_TRACKING_URI": local_mlflow.url,
        "BRIDGE_URL": local_bridge.url,
        **local_s3.client_env(),
        "CI_REGISTRY_USER": "gitlab-ci-token",
        "CI_REGISTRY_PASSWORD": "job-token-value",
        "PLATFORM_BUILDKIT_IMAGE": IMAGE,
        "PLATFORM_RELEASE_CLI_IMAGE": IMAGE,
        "PLATFORM_PYTHON_ML_IMAGE": IMAGE,
        "PLATFORM_TEMPLATES_TEST_STORE": "s3://datasets/pipeline-templates-tests",
        # gitlab-ci-local mints no ID tokens: one token, signed by the test issuer, for the run.
        "BRIDGE_ID_TOKEN": id_issuer.mint(claims, local_bridge.url),
    }
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ["PATH"]])
    env = {"PATH": path, "BUILDKIT_RECORD_DIR": str(record)}

    done = _gcl(
        project,
        "--shell-isolation",
        "--force-shell-executor",
        "--no-artifacts-to-source",
        variables=variables,
        env=env,
    )
    output = done.stdout + done.stderr

    # gitlab-ci-local passes the trigger job even when a child job fails: check each one.
    for job in ("build-test-environment", "component-tests-config", "component-tests"):
        assert f"PASS  {job}" in output, output[-6000:]
    for child in ("seed-test-dataset", "dataset", "train", "register-model"):
        assert f"PASS  [component-tests] -> {child}" in output, output[-6000:]
    assert "PASS  create-release" in output, output[-6000:]
    built = json.loads((record / "environment.json").read_text())
    assert f"build-arg:BASE_IMAGE={IMAGE}" in built["args"]
    status, job = local_bridge.admin_get(f"/api/v1/jobs/{job_id}")
    assert status == 200, job
    # Included at the commit itself: GitLab gives no catalog version for a SHA.
    assert job["provenance"]["template"] == {
        "name": "train",
        "version": None,
        "sha": sha,
        "reference": sha,
    }


def test_the_deploy_makes_the_project_a_catalog_resource_before_it_tags() -> None:
    """GitLab turns a release into a catalog version only for a catalog resource: the deploy
    must set that before the tag push whose pipeline releases."""
    tasks_file = REPO / "ansible" / "roles" / "gitlab" / "tasks" / "publish_templates.yml"
    publish = next(t for t in yaml.safe_load(tasks_file.read_text()) if "block" in t)
    names = [task["name"] for task in publish["block"]]
    catalog = next(i for i, t in enumerate(publish["block"]) if "catalogResourcesCreate" in str(t))
    tag = names.index("Tag the version")
    assert catalog < tag, names
