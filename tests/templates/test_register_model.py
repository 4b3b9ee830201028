"""The `register-model` template: registration gated on a metric threshold."""

from __future__ import annotations

from tests.fixtures.local_platform import IMAGE, PipelineRun, include, mlflow_get


def test_the_example_registers_its_model_with_an_alias(example_pipeline: PipelineRun) -> None:
    register = example_pipeline.job("register-model")
    assert register.status == "success"
    run_id = example_pipeline.dotenv("train", "platform-run.env")["PLATFORM_MLFLOW_RUN_ID"]
    model = example_pipeline.dotenv("register-model", "platform-model.env")
    assert model["PLATFORM_MODEL_NAME"] == "breast-cancer-classifier"
    mlflow = example_pipeline.project.mlflow
    version = mlflow_get(
        mlflow,
        "model-versions/get",
        name="breast-cancer-classifier",
        version=model["PLATFORM_MODEL_VERSION"],
    )["model_version"]
    assert version["run_id"] == run_id
    tags = {t["key"]: t["value"] for t in version.get("tags", [])}
    assert tags["platform.gate"] == "test_roc_auc >= 0.95"
    alias = mlflow_get(
        mlflow, "registered-models/alias", name="breast-cancer-classifier", alias="candidate"
    )["model_version"]
    assert alias["version"] == model["PLATFORM_MODEL_VERSION"]


def _register(ci_project, example_pipeline: PipelineRun, **inputs):
    run_id = example_pipeline.dotenv("train", "platform-run.env")["PLATFORM_MLFLOW_RUN_ID"]
    project = ci_project(
        ci={
            "include": [
                include(
                    "register-model",
                    image=IMAGE,
                    run_id=run_id,
                    model_name="gated-model",
                    **inputs,
                )
            ]
        }
    )
    return project.run().job("register-model")


def _versions(example_pipeline: PipelineRun, name: str) -> list:
    mlflow = example_pipeline.project.mlflow
    answer = mlflow_get(mlflow, "model-versions/search", filter=f"name='{name}'")
    return answer.get("model_versions", [])


def test_a_metric_below_the_threshold_is_refused(ci_project, example_pipeline) -> None:
    job = _register(ci_project, example_pipeline, metric="test_roc_auc", threshold=1.5)

    assert job.status == "failed"
    assert "Refusing to register: test_roc_auc = " in job.output
    assert "is below the threshold 1.5" in job.output
    assert _versions(example_pipeline, "gated-model") == []


def test_a_missing_metric_is_refused_naming_it(ci_project, example_pipeline) -> None:
    job = _register(ci_project, example_pipeline, metric="val_loss", threshold=0.1)

    assert job.status == "failed"
    assert "has no metric 'val_loss'" in job.output
    assert "test_roc_auc" in job.output, "the message lists the metrics the run has"


def test_lower_is_better_gates_the_other_way(ci_project, example_pipeline) -> None:
    job = _register(
        ci_project,
        example_pipeline,
        metric="cv_roc_auc_std",
        threshold=0.5,
        greater_is_better=False,
    )

    assert job.status == "success", job.output[-3000:]
    assert len(_versions(example_pipeline, "gated-model")) == 1
