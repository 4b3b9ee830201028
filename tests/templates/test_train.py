"""The `train` template, run by gitlab-ci-local against real MLflow, S3 and bridge servers."""

from __future__ import annotations

import hashlib
import json
import platform
import re
from importlib import metadata

import pytest

from tests.fixtures.local_platform import (
    IMAGE,
    TEMPLATE_VERSION,
    TEST_CLIENT,
    PipelineRun,
    include,
    mlflow_get,
    mlflow_run,
)

SHADOW_IMAGE = "registry.test/someone/else@sha256:" + "ee" * 32


def this_runtime() -> dict[str, str]:
    """The runtime local mode really runs jobs in: this interpreter and its package set (the
    jobs run with gitlab-ci-local's shell executor and this .venv's Python first on PATH)."""
    distributions = sorted(
        {f"{d.metadata['Name'].lower()}=={d.version}" for d in metadata.distributions()}
    )
    return {
        "executor": "shell",
        "python": platform.python_version(),
        "packages_sha256": hashlib.sha256("\n".join(distributions).encode()).hexdigest(),
    }


def test_example_run_is_tracked_with_params_metrics_and_reproducibility_tags(
    example_pipeline: PipelineRun, example_dataset: str
) -> None:
    train = example_pipeline.job("train")
    run_id = example_pipeline.dotenv("train", "platform-run.env")["PLATFORM_MLFLOW_RUN_ID"]
    run = mlflow_run(example_pipeline.project.mlflow, run_id)

    assert run["info"]["status"] == "FINISHED"
    assert run["params"]["C"] == "0.5"
    assert run["params"]["seed"] == "42"
    assert run["params"]["n_samples"] == "569"
    assert set(run["metrics"]) >= {"test_roc_auc", "test_accuracy", "cv_roc_auc_mean", "test_f1"}
    assert 0.95 < run["metrics"]["test_roc_auc"] <= 1.0
    tags = run["tags"]
    project = example_pipeline.project
    assert tags["gitlab.CI_JOB_ID"] == str(train.job_id)
    assert tags["gitlab.CI_PIPELINE_ID"] == str(example_pipeline.pipeline_id)
    assert tags["gitlab.CI_PROJECT_PATH"] == project.path
    assert tags["mlflow.source.git.commit"] == project.sha
    assert tags["platform.template"] == f"train@{TEMPLATE_VERSION}"
    assert tags["platform.image"] == "", "the job ran in no image"
    assert json.loads(tags["platform.runtime"]) == this_runtime()
    datasets = json.loads(tags["platform.datasets"])
    assert [(d["name"], d["sha256"]) for d in datasets] == [("breast_cancer.csv", example_dataset)]


def test_run_artifacts_land_in_s3(example_pipeline: PipelineRun) -> None:
    run_id = example_pipeline.dotenv("train", "platform-run.env")["PLATFORM_MLFLOW_RUN_ID"]
    s3 = example_pipeline.project.s3.client()
    keys = [
        item["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="mlflow")
        for item in page.get("Contents", [])
    ]
    evaluation = [key for key in keys if run_id in key and key.endswith("evaluation.json")]
    assert len(evaluation) == 1, keys
    body = json.loads(s3.get_object(Bucket="mlflow", Key=evaluation[0])["Body"].read())
    assert len(body["confusion_matrix"]) == 2
    assert any(key.endswith("MLmodel") for key in keys), "the logged model is in S3 too"


def test_provenance_is_recorded_in_the_bridge(
    example_pipeline: PipelineRun, example_dataset: str, git_server
) -> None:
    train = example_pipeline.job("train")
    project = example_pipeline.project
    run_env = example_pipeline.dotenv("train", "platform-run.env")
    status, job = project.bridge.admin_get(f"/api/v1/jobs/{train.job_id}")
    assert status == 200, job
    assert (job["status"], job["client"]) == ("success", TEST_CLIENT), "the job hook joined it"
    chain = job["provenance"]
    assert (chain["pipeline_id"], chain["sha"]) == (example_pipeline.pipeline_id, project.sha)
    assert chain["project_path"] == project.path
    # Local mode: the jobs ran in no image (shell executor), so no image is recorded.
    assert (chain["image"], chain["image_digest"]) == (None, None)
    assert chain["runtime"] == this_runtime()
    # gitlab-ci-local resolves `component.version` only for ranges (`@1.0`); for an exact ref
    # it stays unset, so the bridge records null (GitLab gives the release's version).
    assert chain["template"] == {
        "name": "train",
        "version": None,
        "sha": git_server.templates_sha,
        "reference": TEMPLATE_VERSION,
    }
    assert [d["sha256"] for d in chain["datasets"]] == [example_dataset]
    run_id, experiment_id = (
        run_env["PLATFORM_MLFLOW_RUN_ID"],
        run_env["PLATFORM_MLFLOW_EXPERIMENT_ID"],
    )
    assert chain["mlflow"]["run_url"] == (
        f"{project.mlflow.url}/#/experiments/{experiment_id}/runs/{run_id}"
    )
    assert chain["params"]["C"] == "0.5"


def test_rerun_of_the_same_commit_reproduces_the_metrics(example_pipeline: PipelineRun) -> None:
    project = example_pipeline.project
    first_id = example_pipeline.dotenv("train", "platform-run.env")["PLATFORM_MLFLOW_RUN_ID"]

    rerun = project.run()

    assert [r.status for r in rerun.results] == ["success"] * len(rerun.results)
    second_id = rerun.dotenv("train", "platform-run.env")["PLATFORM_MLFLOW_RUN_ID"]
    assert second_id != first_id
    first, second = mlflow_run(project.mlflow, first_id), mlflow_run(project.mlflow, second_id)
    assert second["tags"]["mlflow.source.git.commit"] == first["tags"]["mlflow.source.git.commit"]
    assert second["params"] == first["params"]
    assert second["metrics"] == first["metrics"]


def _single_train_project(ci_project, command: str):
    return ci_project(
        files={"noop.py": "print('training')\n"},
        ci={"include": [include("train", image=IMAGE, command=command)]},
    )


def test_failed_command_fails_the_job_and_marks_the_run_failed(ci_project) -> None:
    project = _single_train_project(ci_project, "python noop.py && exit 3")

    run = project.run()

    train = run.job("train")
    assert train.status == "failed"
    run_id = run.dotenv("train", "platform-run.env")["PLATFORM_MLFLOW_RUN_ID"]
    assert mlflow_run(project.mlflow, run_id)["info"]["status"] == "FAILED"


def test_experiment_is_named_after_the_project_unless_set(ci_project) -> None:
    project = _single_train_project(ci_project, "python noop.py")

    run = project.run()

    assert run.job("train").status == "success", run.job("train").output[-3000:]
    run_id = run.dotenv("train", "platform-run.env")["PLATFORM_MLFLOW_RUN_ID"]
    experiment_id = mlflow_run(project.mlflow, run_id)["info"]["experiment_id"]
    experiment = mlflow_get(project.mlflow, "experiments/get", experiment_id=experiment_id)
    assert experiment["experiment"]["name"] == project.path


def test_a_token_for_another_audience_is_refused_and_fails_the_job(ci_project) -> None:
    project = _single_train_project(ci_project, "python noop.py")

    run = project.run(audience="https://some-other-service.example")

    train = run.job("train")
    assert train.status == "failed"
    assert "The bridge refused the run's provenance (HTTP 401)" in train.output


def test_project_variables_cannot_change_what_the_bridge_records(ci_project, git_server) -> None:
    major_minor = TEMPLATE_VERSION.rsplit(".", 1)[0]
    project = ci_project(
        files={"noop.py": "print('training')\n"},
        ci={"include": [include("train", ref=major_minor, image=IMAGE, command="python noop.py")]},
    )
    project.extra_variables.update(
        {
            # What the templates used to read, and could be shadowed by any project.
            "PLATFORM_TEMPLATE": "someone-else",
            "PLATFORM_TEMPLATE_VERSION": "9.9.9",
            "PLATFORM_IMAGE": SHADOW_IMAGE,
            # As GitLab's docker executor sets it (every executor but shell and ssh): the job
            # then counts as run in its image, so the image is recorded.
            "CI_DISPOSABLE_ENVIRONMENT": "true",
        }
    )

    run = project.run()

    train = run.job("train")
    assert train.status == "success", train.output[-3000:]
    status, job = project.bridge.admin_get(f"/api/v1/jobs/{train.job_id}")
    assert status == 200, job
    chain = job["provenance"]
    assert chain["template"] == {
        "name": "train",
        "version": TEMPLATE_VERSION,  # what GitLab resolved `@<major.minor>` to
        "sha": git_server.templates_sha,
        "reference": major_minor,
    }
    assert chain["image"] == IMAGE
    assert chain["runtime"]["executor"] == "container"


def _image_variable_project(ci_project, value: str | None):
    """A train job whose image is the instance variable the deploy sets, run as GitLab's docker
    executor would report it (CI_DISPOSABLE_ENVIRONMENT), with the variable set to `value`."""
    project = ci_project(
        files={"noop.py": "print('training')\n"},
        ci={
            "include": [
                include("train", image="$PLATFORM_PYTHON_ML_IMAGE", command="python noop.py")
            ]
        },
    )
    project.extra_variables["CI_DISPOSABLE_ENVIRONMENT"] = "true"
    if value is not None:
        project.extra_variables["PLATFORM_PYTHON_ML_IMAGE"] = value
    return project


def test_an_image_variable_records_the_digest_the_job_ran_in(ci_project) -> None:
    project = _image_variable_project(ci_project, IMAGE)

    run = project.run()

    train = run.job("train")
    assert train.status == "success", train.output[-3000:]
    status, job = project.bridge.admin_get(f"/api/v1/jobs/{train.job_id}")
    assert status == 200, job
    # The runner pulled `image: $PLATFORM_PYTHON_ML_IMAGE` expanded from the job's variables:
    # the same value the job sees, so that digest is what ran and what is recorded.
    assert job["provenance"]["image"] == IMAGE
    run_id = run.dotenv("train", "platform-run.env")["PLATFORM_MLFLOW_RUN_ID"]
    assert mlflow_run(project.mlflow, run_id)["tags"]["platform.image"] == IMAGE


@pytest.mark.parametrize(
    "value", [None, "registry.test/platform/environments/python-ml:latest"], ids=["unset", "tag"]
)
def test_an_image_variable_without_a_digest_refuses_the_job(ci_project, value) -> None:
    project = _image_variable_project(ci_project, value)

    run = project.run()

    train = run.job("train")
    assert train.status == "failed"
    refusal = [line for line in train.output.splitlines() if "not an image by digest" in line]
    assert len(refusal) == 1, train.output[-3000:]
    assert "$PLATFORM_PYTHON_ML_IMAGE" in refusal[0]
    assert not re.search(r"MLflow run \w+ in experiment", train.output), "no run was opened"
    assert "$ python noop.py" not in train.output, "the command never ran"
