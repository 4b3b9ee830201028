"""The example runs once per change: a push to a branch with an open merge request creates no
branch pipeline, only the merge request pipeline does (so training is not run, and billed,
twice).

gitlab-ci-local does not apply `workflow:rules` to decide whether a pipeline exists, but it
evaluates `rules:` exactly as GitLab does. GitLab documents the same semantics for both: the
first rule whose `if` matches decides, `when: never` excludes, no match excludes. So the
example's workflow rules are evaluated as the rules of a probe job, for each pipeline source.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from local import gcl
from tests.fixtures.local_platform import REPO

PIPELINES = [
    pytest.param({"CI_COMMIT_BRANCH": "feature"}, "push", True, id="branch push, no MR"),
    pytest.param(
        {"CI_COMMIT_BRANCH": "feature", "CI_OPEN_MERGE_REQUESTS": "lab/analysis!7"},
        "push",
        False,
        id="branch push with an open MR",
    ),
    pytest.param(
        {"CI_MERGE_REQUEST_IID": "7", "CI_OPEN_MERGE_REQUESTS": "lab/analysis!7"},
        "merge_request_event",
        True,
        id="the MR pipeline",
    ),
    pytest.param({"CI_COMMIT_TAG": "v1"}, "push", True, id="tag"),
]
PREDEFINED = "CI_PIPELINE_SOURCE,CI_COMMIT_BRANCH,CI_COMMIT_REF_NAME,CI_COMMIT_TAG"


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose one job has the example's workflow rules as its rules."""
    workflow = yaml.safe_load((REPO / "examples" / "breast-cancer" / ".gitlab-ci.yml").read_text())
    tree = tmp_path_factory.mktemp("probe") / "tree"
    tree.mkdir()
    rules = workflow["workflow"]["rules"]
    (tree / ".gitlab-ci.yml").write_text(json.dumps({"probe": {"rules": rules, "script": ["x"]}}))
    work = tree.parent / "work"
    gcl.checkout(tree, work, "http://127.0.0.1:9/lab/analysis.git")
    return work


@pytest.mark.parametrize(("variables", "source", "runs"), PIPELINES)
def test_one_pipeline_per_change(probe: Path, variables: dict, source: str, runs: bool) -> None:
    arguments = [gcl.gitlab_ci_local(), "--list-json", "--ignore-predefined-vars", PREDEFINED]
    for name, value in {**variables, "CI_PIPELINE_SOURCE": source}.items():
        arguments += ["--variable", f"{name}={value}"]
    done = subprocess.run(
        arguments, cwd=probe, capture_output=True, text=True, check=False,
        env=gcl.job_environment(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (job,) = json.loads(done.stdout[done.stdout.index("[") :])
    assert (job["when"] != "never") is runs
