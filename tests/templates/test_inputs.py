"""Bad inputs stop the pipeline before any job runs, with a message that names the input."""

from __future__ import annotations

import pytest
import yaml

from local.gcl import PipelineError
from tests.fixtures.local_platform import IMAGE, REPO, include
from tests.templates.gitlab_inputs import input_errors, spec_inputs

TEMPLATES = REPO / "pipeline-templates" / "templates"
GOOD_TRAIN = {"image": IMAGE, "command": "python train.py"}
GOOD_SLURM = {
    "image": IMAGE,
    "login_host": "login.hpc.example",
    "login_user": "alice",
    "remote_root": "/scratch/alice/ci",
    "command": "python3 analysis.py",
}


@pytest.mark.parametrize(
    ("template", "inputs", "named", "why"),
    [
        ("train", {**GOOD_TRAIN, "image": "python:3.12"}, "image", "does not match required regex"),
        ("train", {"image": IMAGE}, "command", "required value has not been provided"),
        (
            "register-model",
            {"image": IMAGE, "model_name": "m", "metric": "auc", "threshold": "high"},
            "threshold",
            "provided value is not a number",
        ),
        (
            "register-model",
            {
                "image": IMAGE,
                "model_name": "m",
                "metric": "auc",
                "threshold": 0.9,
                "greater_is_better": "yes",
            },
            "greater_is_better",
            "provided value is not a boolean",
        ),
        ("dataset", {"image": IMAGE, "store": "https://bucket"}, "store", "does not match"),
        ("build-environment", {"environment": "../etc"}, "environment", "does not match"),
        ("slurm-job", {**GOOD_SLURM, "time_limit": "1 hour"}, "time_limit", "does not match"),
        ("slurm-job", {**GOOD_SLURM, "cpus": "two"}, "cpus", "provided value is not a number"),
        ("slurm-job", {**GOOD_SLURM, "remote_root": "scratch"}, "remote_root", "does not match"),
        (
            "slurm-job",
            {k: v for k, v in GOOD_SLURM.items() if k != "login_host"},
            "login_host",
            "required value has not been provided",
        ),
    ],
)
def test_bad_inputs_stop_the_pipeline_before_any_job(
    ci_project, template: str, inputs: dict, named: str, why: str
) -> None:
    project = ci_project(
        ci={"include": [include(template, **inputs)], "after": {"script": ["touch ran"]}}
    )

    with pytest.raises(PipelineError) as refused:
        project.run()

    message = str(refused.value)
    assert f"`{named}` input" in message
    assert why in message
    assert not (project.dir / ".gitlab-ci-local" / "builds").exists(), "no job may have run"
    # GitLab's rule, checked independently of gitlab-ci-local, agrees.
    errors = input_errors(spec_inputs(TEMPLATES / f"{template}.yml"), inputs)
    assert any(f"`{named}` input" in error and why in error for error in errors), errors


def test_unknown_inputs_are_refused_by_gitlabs_rule() -> None:
    errors = input_errors(
        spec_inputs(TEMPLATES / "train.yml"), {**GOOD_TRAIN, "comand": "python train.py"}
    )

    assert errors == ["unknown input arguments: `comand`"]


def test_the_example_pipeline_satisfies_gitlabs_rules() -> None:
    config = yaml.safe_load((REPO / "examples" / "breast-cancer" / ".gitlab-ci.yml").read_text())
    checked = []
    for entry in config["include"]:
        name = entry["component"].rsplit("/", 1)[1].split("@")[0]
        assert input_errors(spec_inputs(TEMPLATES / f"{name}.yml"), entry.get("inputs", {})) == []
        checked.append(name)
    assert checked == ["dataset", "train", "register-model"]


@pytest.mark.parametrize("template", sorted(p.stem for p in TEMPLATES.glob("*.yml")))
def test_defaults_satisfy_their_own_rules(template: str) -> None:
    spec = spec_inputs(TEMPLATES / f"{template}.yml")
    defaults_only = {name: d["default"] for name, d in spec.items() if "default" in d}
    mandatory = [name for name, d in spec.items() if "default" not in d]

    errors = input_errors(spec, defaults_only)

    assert errors == [f"`{name}` input: required value has not been provided" for name in mandatory]


def test_every_input_is_described() -> None:
    for template in TEMPLATES.glob("*.yml"):
        for name, declaration in spec_inputs(template).items():
            assert declaration.get("description", "").strip(), f"{template.name}: {name}"


@pytest.mark.parametrize("template", ["dataset", "train", "register-model", "slurm-job"])
def test_the_image_is_a_digest_or_a_variable_and_nothing_else(template: str) -> None:
    spec = spec_inputs(TEMPLATES / f"{template}.yml")
    accepted = [IMAGE, "$PLATFORM_PYTHON_ML_IMAGE", "$ENVIRONMENT_IMAGE"]
    refused = [
        "python:3.12",
        "registry.test/python-ml:latest",
        "$(id)",
        "${PLATFORM_PYTHON_ML_IMAGE}",
        "$PLATFORM_PYTHON_ML_IMAGE:latest",
        "registry.test/python-ml@sha256:" + "ab" * 31,
    ]

    def image_errors(image: str) -> list[str]:
        return [e for e in input_errors(spec, {"image": image}) if "`image`" in e]

    assert [image for image in accepted if image_errors(image)] == []
    assert [image for image in refused if not image_errors(image)] == []
