"""The `slurm-job` component and its example, checked without running them."""

from __future__ import annotations

import yaml

from tests.fixtures.local_platform import REPO, TEMPLATE_VERSION, TEMPLATES
from tests.templates.gitlab_inputs import input_errors, spec_inputs

EXAMPLE = REPO / "examples" / "hpc-analysis" / ".gitlab-ci.yml"
TEMPLATE = TEMPLATES / "templates" / "slurm-job.yml"


def test_the_example_satisfies_gitlabs_rules_and_pins_the_version() -> None:
    config = yaml.safe_load(EXAMPLE.read_text())
    (entry,) = config["include"]

    assert entry["component"] == (
        f"$CI_SERVER_FQDN/platform/pipeline-templates/slurm-job@{TEMPLATE_VERSION}"
    )
    assert input_errors(spec_inputs(TEMPLATE), entry["inputs"]) == []
    job = entry["inputs"]["job_name"]
    assert config[job]["tags"] == ["hpc-wait"], "the waiting job runs on the zero-priced class"


def test_no_secret_is_an_input() -> None:
    names = set(spec_inputs(TEMPLATE))

    assert not {name for name in names if "key" in name and not name.endswith("_variable")}
    assert {"ssh_key_variable", "known_hosts_variable"} <= names


def test_the_command_is_not_expanded_by_gitlab() -> None:
    _, body = yaml.safe_load_all(TEMPLATE.read_text())
    (job,) = body.values()

    assert job["variables"]["PLATFORM_SLURM_COMMAND"]["expand"] is False


def test_script_and_after_script_run_the_same_program() -> None:
    _, body = yaml.safe_load_all(TEMPLATE.read_text())
    (job,) = body.values()

    assert job["after_script"] == job["script"]
    assert "StrictHostKeyChecking=yes" in job["script"][0]
    assert "StrictHostKeyChecking=no" not in TEMPLATE.read_text()
