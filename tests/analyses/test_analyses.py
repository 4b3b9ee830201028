"""Analyses: one pipeline per request, status from the pipeline's webhooks, results linked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from bridge.api.app import create_app
from bridge.auth import add_client
from bridge.cli import main
from bridge.settings import Settings
from tests.bridge.gitlab_fake import TOKEN, GitLabFake
from tests.bridge.helpers import post_event
from tests.bridge.payloads import CPU_RUNNER, job_event, pipeline_build, pipeline_event
from tests.bridge.test_provenance import REPORT, jwks, keys, mint, post_run  # noqa: F401
from tests.fixtures.datasets import bridge_cli

PROJECT = "lab/qc"
START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def env(datasets_env: dict[str, str], gitlab: GitLabFake, jwks: Any) -> dict[str, str]:  # noqa: F811
    return {
        **datasets_env,
        "BRIDGE_GITLAB_URL": gitlab.url,
        "BRIDGE_GITLAB_TOKEN": TOKEN,
        "BRIDGE_JWKS_URL": jwks.url,
    }


@pytest.fixture
def bridge(env: dict[str, str], gitlab: GitLabFake) -> Iterator[TestClient]:
    gitlab.add_project(PROJECT)
    with TestClient(create_app(Settings.from_env(env))) as client:
        yield client


@pytest.fixture
def dataset(env: dict[str, str], tmp_path: Path) -> str:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cells.csv").write_text("a,b\n1,2\n")
    added = bridge_cli(
        env, "datasets", "add", str(tmp_path / "data"), "--group", "lab", "--format", "json"
    )
    return added["id"]


def _token(db_url: str, client: str) -> dict[str, str]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return {"Authorization": f"Bearer {add_client(conn, client)}"}


def _submit(bridge: TestClient, headers: dict[str, str], body: dict[str, Any]) -> Any:
    return bridge.post("/api/v1/analyses", json=body, headers=headers)


def _status(bridge: TestClient, headers: dict[str, str], analysis_id: int) -> dict[str, Any]:
    response = bridge.get(f"/api/v1/analyses/{analysis_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_submitting_twice_starts_one_pipeline_with_the_dataset_id(
    bridge: TestClient, gitlab: GitLabFake, dataset: str, db_url: str
) -> None:
    lab = _token(db_url, "lab")
    request = {"dataset": dataset, "analysis": f"{PROJECT}@main", "variables": {"MODE": "fast"}}

    first = _submit(bridge, lab, request)
    second = _submit(bridge, lab, request)

    assert first.status_code == 201, first.text
    assert second.status_code == 200
    assert first.json()["created"] is True
    assert second.json()["created"] is False
    assert second.json()["id"] == first.json()["id"]
    assert len(gitlab.pipelines) == 1
    (pipeline,) = gitlab.pipelines.values()
    assert pipeline["id"] == first.json()["pipeline_id"]
    assert pipeline["ref"] == "main"
    assert sorted(pipeline["variables"], key=lambda v: v["key"]) == [
        {"key": "MODE", "value": "fast", "variable_type": "env_var"},
        {"key": "PLATFORM_DATASET_ID", "value": dataset, "variable_type": "env_var"},
    ]
    assert first.json()["status"] == "queued"
    assert gitlab.writes().count(("POST", "/api/v4/projects/lab%2Fqc/pipeline")) == 1


def test_force_starts_a_second_pipeline_and_other_variables_are_another_request(
    bridge: TestClient, gitlab: GitLabFake, dataset: str, db_url: str
) -> None:
    lab = _token(db_url, "lab")
    request = {"dataset": dataset, "analysis": f"{PROJECT}@main"}

    first = _submit(bridge, lab, request).json()
    forced = _submit(bridge, lab, {**request, "force": True}).json()
    other = _submit(bridge, lab, {**request, "variables": {"SEED": "2"}}).json()

    assert len({first["id"], forced["id"], other["id"]}) == 3
    assert len(gitlab.pipelines) == 3
    listed = bridge.get(f"/api/v1/analyses?dataset={dataset}", headers=lab).json()
    assert [a["id"] for a in listed["analyses"]] == [other["id"], forced["id"], first["id"]]


def test_the_pipeline_webhooks_drive_the_status_and_link_the_mlflow_run(
    bridge: TestClient,
    env: dict[str, str],
    dataset: str,
    db_url: str,
    keys: Any,  # noqa: F811
) -> None:
    lab = _token(db_url, "lab")
    submitted = _submit(bridge, lab, {"dataset": dataset, "analysis": f"{PROJECT}@main"}).json()
    pipeline_id, project_id = submitted["pipeline_id"], 101
    common = {"project": PROJECT, "project_id": project_id, "pipeline_id": pipeline_id}
    seen = [_status(bridge, lab, submitted["id"])["status"]]

    post_event(bridge, job_event(1, "pending", created=START, **common))
    seen.append(_status(bridge, lab, submitted["id"])["status"])
    started = START + timedelta(seconds=5)
    post_event(bridge, job_event(1, "running", runner=CPU_RUNNER, started=started, **common))
    seen.append(_status(bridge, lab, submitted["id"])["status"])
    token = mint(
        keys["current"], iss=env["BRIDGE_GITLAB_URL"], job_id="1", project_path=PROJECT,
        pipeline_id=str(pipeline_id),
    )  # fmt: skip
    report = {**REPORT, "job_id": 1, "pipeline_id": pipeline_id, "project_path": PROJECT}
    assert post_run(bridge, token, report).status_code == 201
    finished = started + timedelta(seconds=90)
    post_event(
        bridge,
        job_event(1, "success", runner=CPU_RUNNER, started=started, finished=finished,
                  duration=90.0, **common),
    )  # fmt: skip
    done = _status(bridge, lab, submitted["id"])
    seen.append(done["status"])

    assert seen == ["queued", "queued", "running", "succeeded"]
    assert done["queued_at"] is not None
    assert done["started_at"] == started.isoformat()
    assert done["finished_at"] == finished.isoformat()
    assert done["mlflow_runs"] == [
        {
            "job_id": 1,
            "run_id": REPORT["mlflow_run_id"],
            "experiment_id": "4",
            "url": f"https://mlflow.example.com/#/experiments/4/runs/{REPORT['mlflow_run_id']}",
            "artifacts_url": (
                f"https://mlflow.example.com/#/experiments/4/runs/{REPORT['mlflow_run_id']}"
                "/artifacts"
            ),
            "image": REPORT["image"],
            "template": "train@1.2.0",
        }
    ]
    assert done["artifacts"] == [
        {"job_id": 1, "url": f"{env['BRIDGE_GITLAB_URL']}/{PROJECT}/-/jobs/1/artifacts/browse"}
    ]
    # 90 s on the "standard" class at 0.02 per minute.
    assert done["usage"] == {"currency": "EUR", "billable_seconds": "90.0", "amount": "0.03"}


def test_a_failed_pipeline_shows_failed(bridge: TestClient, dataset: str, db_url: str) -> None:
    lab = _token(db_url, "lab")
    submitted = _submit(bridge, lab, {"dataset": dataset, "analysis": f"{PROJECT}@main"}).json()
    common = {"project": PROJECT, "project_id": 101, "pipeline_id": submitted["pipeline_id"]}
    started = START + timedelta(seconds=3)
    post_event(bridge, job_event(7, "running", runner=CPU_RUNNER, started=started, **common))
    post_event(
        bridge,
        job_event(7, "failed", runner=CPU_RUNNER, started=started,
                  finished=started + timedelta(seconds=4), duration=4.0, **common),
    )  # fmt: skip

    shown = _status(bridge, lab, submitted["id"])

    assert shown["status"] == "failed"
    assert shown["jobs"][0]["status"] == "failed"
    assert shown["artifacts"] == []


def test_another_group_sees_no_dataset_and_no_analysis(
    bridge: TestClient, dataset: str, db_url: str
) -> None:
    lab, other = _token(db_url, "lab"), _token(db_url, "other")
    submitted = _submit(bridge, lab, {"dataset": dataset, "analysis": f"{PROJECT}@main"}).json()

    assert bridge.get("/api/v1/datasets", headers=other).json() == {"datasets": [], "next": None}
    assert bridge.get(f"/api/v1/datasets/{dataset}", headers=other).status_code == 404
    assert bridge.get("/api/v1/analyses", headers=other).json()["analyses"] == []
    assert bridge.get(f"/api/v1/analyses/{submitted['id']}", headers=other).status_code == 404
    refused = _submit(bridge, other, {"dataset": dataset, "analysis": "other/qc@main"})
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "unknown_dataset"
    assert [d["id"] for d in bridge.get("/api/v1/datasets", headers=lab).json()["datasets"]] == [
        dataset
    ]


def test_an_unknown_ref_is_refused_and_nothing_is_recorded(
    bridge: TestClient, dataset: str, db_url: str
) -> None:
    lab = _token(db_url, "lab")

    refused = _submit(bridge, lab, {"dataset": dataset, "analysis": f"{PROJECT}@nope"})

    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "pipeline_refused"
    assert "Reference not found" in refused.json()["error"]["message"]
    assert bridge.get("/api/v1/analyses", headers=lab).json()["analyses"] == []


def test_the_cli_submits_once_and_prints_the_documented_json(
    env: dict[str, str], gitlab: GitLabFake, dataset: str
) -> None:
    gitlab.add_project(PROJECT)
    args = ["analyses", "submit", "--dataset", dataset, "--analysis", f"{PROJECT}@main",
            "--var", "MODE=fast", "--format", "json"]  # fmt: skip

    first = bridge_cli(env, *args)
    again = bridge_cli(env, *args)
    forced = bridge_cli(env, *args, "--force")

    assert set(first) == {"id", "pipeline_id", "status", "created"}
    assert first["created"] is True
    assert first["status"] == "queued"
    assert again == {**first, "created": False}
    assert forced["created"] is True
    assert forced["pipeline_id"] != first["pipeline_id"]
    shown = bridge_cli(env, "analyses", "show", str(first["id"]))
    assert shown["dataset_id"] == dataset
    bad = CliRunner().invoke(main, [*args[:4], "--analysis", "no-project"], env=env)
    assert bad.exit_code == 1
    assert "must be GROUP/PROJECT@REF" in bad.output


def test_a_pipeline_hook_alone_moves_the_status_to_canceled(
    bridge: TestClient, dataset: str, db_url: str
) -> None:
    lab = _token(db_url, "lab")
    submitted = _submit(bridge, lab, {"dataset": dataset, "analysis": f"{PROJECT}@main"}).json()
    started = START + timedelta(seconds=2)
    builds = [
        pipeline_build(21, "success", runner=CPU_RUNNER, started=started,
                       finished=started + timedelta(seconds=30), duration=30.0),
        pipeline_build(22, "canceled", runner=CPU_RUNNER, started=started,
                       finished=started + timedelta(seconds=5), duration=5.0, name="report"),
    ]  # fmt: skip
    event = pipeline_event(
        submitted["pipeline_id"], builds, project=PROJECT, project_id=101, status="canceled"
    )

    assert post_event(bridge, event).status_code == 200
    shown = _status(bridge, lab, submitted["id"])

    assert shown["status"] == "canceled"
    assert [job["status"] for job in shown["jobs"]] == ["success", "canceled"]
    assert shown["finished_at"] == (started + timedelta(seconds=30)).isoformat()
