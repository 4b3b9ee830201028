"""The `train` template logs to MLflow behind GitLab login with the job's CI ID token alone.

gitlab-ci-local runs a project of team-a that includes the template by version; GitLab's part
(minting each `id_tokens:` entry for its audience) is played by the GitLab stand-in for MLflow's
audience and by the bridge's local issuer for the bridge's. No MLflow user name or password is
given to the job.
"""

from __future__ import annotations

import json
import sys

import httpx
import pytest

from local import gcl
from local.issuer import LocalIssuer, gitlab_claims
from tests.fixtures.local_platform import IMAGE, GitServer, RunningBridge, include
from tests.identity.conftest import API, GroupSync, MlflowSso
from tests.identity.test_mlflow_sso import bearer

TRAIN = """\
import mlflow

mlflow.log_param("alpha", "0.1")
mlflow.log_metric("loss", 0.25)
"""


@pytest.fixture(scope="module")
def granted(mlflow_sso: MlflowSso, group_sync: GroupSync) -> MlflowSso:
    with mlflow_sso.session("alice"):
        pass  # GitLab users exist in MLflow once they have logged in (or been provisioned)
    return mlflow_sso


def test_a_train_job_logs_its_run_with_an_id_token(
    granted: MlflowSso,
    git_server: GitServer,
    local_bridge: RunningBridge,
    id_issuer: LocalIssuer,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    project_path = "team-a/churn-model"
    tree = tmp_path_factory.mktemp("train-sso") / "tree"
    tree.mkdir()
    (tree / "train.py").write_text(TRAIN)
    ci = {
        "stages": ["test"],
        "include": [include("train", image=IMAGE, command=f"{sys.executable} train.py")],
    }
    (tree / ".gitlab-ci.yml").write_text(json.dumps(ci, indent=2))
    work = tree.parent / "checkout"
    sha = gcl.checkout(tree, work, f"{git_server.url}/{project_path}.git")
    audiences: list[str] = []

    def mint(job: gcl.PlannedJob, job_id: int, audience: str) -> str:
        audiences.append(audience)
        if audience == granted.server.audience:
            return granted.standin.mint_ci_token(
                "alice", project_path, audience, job_id=job_id, pipeline_id=91_000
            )
        claims = gitlab_claims(
            job_id=job_id, project_path=project_path, pipeline_id=91_000, sha=sha
        )
        return id_issuer.mint(claims, audience)

    variables = {"MLFLOW_TRACKING_URI": granted.url, "BRIDGE_URL": local_bridge.url}
    results = gcl.run_pipeline(
        work, first_job_id=91_001, pipeline_id=91_000, variables=variables, mint=mint
    )
    train = next(r for r in results if r.name == "train")
    assert train.status == "success", train.output[-4000:]
    assert sorted(audiences) == sorted([granted.url, local_bridge.url])
    assert "MLFLOW_TRACKING_PASSWORD" not in train.output

    with granted.session("alice") as alice:
        experiment = alice.get(
            f"{granted.url}{API}/experiments/get-by-name",
            params={"experiment_name": project_path},
        ).json()["experiment"]
        runs = alice.post(
            f"{granted.url}{API}/runs/search",
            json={"experiment_ids": [experiment["experiment_id"]]},
        ).json()["runs"]
    assert len(runs) == 1
    run = runs[0]
    assert run["info"]["status"] == "FINISHED"
    assert {m["key"]: m["value"] for m in run["data"]["metrics"]} == {"loss": 0.25}
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["gitlab.CI_JOB_ID"] == str(train.job_id)
    # bob (team-b) cannot see team-a's run, even with a valid token of his own.
    bob_token = granted.standin.mint_ci_token("bob", "team-b/x", granted.server.audience)
    with granted.session("bob"):
        pass
    hidden = httpx.get(
        f"{granted.url}{API}/runs/get",
        params={"run_id": run["info"]["run_id"]},
        headers=bearer(bob_token),
    )
    assert hidden.status_code == 403
