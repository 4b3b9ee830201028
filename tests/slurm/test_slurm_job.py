"""The `slurm-job` component, run by gitlab-ci-local against a real Slurm cluster on loopback
(reached over SSH as a test user) and the platform's real MLflow, S3 and bridge servers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import yaml

from local import gcl
from local.bridge_server import LOCAL_RUNNER, job_hook
from local.issuer import gitlab_claims
from local.slurm import parse_scontrol
from tests.fixtures.local_platform import (
    IMAGE,
    REPO,
    TEMPLATE_VERSION,
    TEST_CLIENT,
    PipelineRun,
    include,
    mlflow_run,
)
from tests.slurm.conftest import HpcCluster
from tests.templates.test_train import this_runtime

EXAMPLE = REPO / "examples" / "hpc-analysis"
CPU_HOUR_PRICE = Decimal("36.00")  # the `hpc:` prices of the test rates file
WAIT_RUNNER = {**LOCAL_RUNNER, "id": 7, "description": "hpc-wait", "tags": ["hpc-wait"]}


def _example_ci(cluster: HpcCluster) -> str:
    """The example's pipeline, pointed at the test login node's port (its only literal)."""
    config = yaml.safe_load((EXAMPLE / ".gitlab-ci.yml").read_text())
    config["include"][0]["inputs"]["login_port"] = cluster.login.port
    config["include"][0]["inputs"]["poll_max_interval"] = 3
    return yaml.safe_dump(config, sort_keys=False)


def _project(ci_project, cluster: HpcCluster, *, ci=None, files=None, source=None, **variables):
    project = ci_project(files=files, ci=ci, source=source)
    project.extra_variables.update(cluster.variables(**variables))
    project.extra_variables.update(
        {"SLURM_LOGIN_HOST": "127.0.0.1", "SLURM_USER": cluster.user.name}
    )
    return project


def _report_on_wait_runner(run: PipelineRun) -> None:
    """The job hook GitLab sends, for a job that ran on the zero-priced `hpc-wait` runner."""
    for result in run.results:
        payload = job_hook(
            result, project_path=run.project.path, sha=run.project.sha, runner=WAIT_RUNNER
        )
        status, answer = run.project.bridge.server.report_job(payload)
        assert status < 300, answer


def _invoice(run: PipelineRun) -> dict:
    period = run.results[0].finished_at.strftime("%Y-%m")
    status, document = run.project.bridge.admin_get(
        f"/api/v1/usage?client={TEST_CLIENT}&period={period}"
    )
    assert status == 200, document
    return document


def _hpc_line(document: dict, unit: str = "cpu-hour") -> dict | None:
    found = [
        line
        for line in document["lines"]
        if line["kind"] == "hpc" and line["runner_class"] == "127.0.0.1" and line["unit"] == unit
    ]
    return found[0] if found else None


def _slurm_job_id(run: PipelineRun, job: str) -> str:
    return run.dotenv(job, "platform-run.env")["PLATFORM_SLURM_JOB_ID"]


def test_example_runs_on_the_cluster_and_is_tracked_and_billed(
    ci_project, empty_queue, git_server
) -> None:
    cluster = empty_queue
    project = _project(
        ci_project, cluster, source=EXAMPLE, files={".gitlab-ci.yml": _example_ci(cluster)}
    )
    before = _hpc_line(_invoice_of(project)) or {"billable_seconds": "0", "jobs": 0}

    run = project.run(report=False)
    _report_on_wait_runner(run)

    job = run.job("growth-statistics")
    assert job.status == "success", job.output[-4000:]
    log = job.output
    # Stage-in with rsync, then the Slurm job's own output in the CI log.
    assert "Number of regular files transferred: 2" in log
    assert re.search(r"Submitted Slurm job \d+", log)
    assert "read 30 measurements of 3 strains" in log
    assert "fastest strain: mutant-b" in log
    assert "COMPLETED, exit code 0" in log
    # Results came back as the job's artifact.
    artifacts = project.dir / ".gitlab-ci-local" / "artifacts" / "growth-statistics"
    summary = json.loads((artifacts / "hpc-results" / "results" / "summary.json").read_text())
    assert set(summary) == {"mutant-a", "mutant-b", "wild-type"}
    assert summary["wild-type"]["n"] == 10
    assert (artifacts / "hpc-results" / "slurm-job.out").read_text().count("fastest strain") == 1
    # The job ran on the compute node as the test user, with the CI ids in its comment.
    slurm_id = _slurm_job_id(run, "growth-statistics")
    accounted = cluster.slurm.job(slurm_id)
    assert accounted["JobState"] == "COMPLETED"
    assert accounted["UserId"].startswith(cluster.user.name + "(")
    assert f"pipeline {run.pipeline_id} job {job.job_id}" in accounted["Comment"]
    assert accounted["JobName"].endswith(f"-{job.job_id}")
    # The rendered batch script: directives from the inputs, no secret in it or in the log.
    (script,) = cluster.user.home.glob(f"ci/*/jobs/{job.job_id}/job.sbatch")
    batch = script.read_text()
    for directive in ("--cpus-per-task=2", "--mem=256M", "--time=00:10:00", "--ntasks=1"):
        assert f"#SBATCH {directive}\n" in batch
    assert f'--comment="gitlab project {project.path} pipeline {run.pipeline_id}' in batch
    key_lines = cluster.key.read_text().splitlines()[1:-1]
    encoded = cluster.variables()["SLURM_SSH_PRIVATE_KEY"]
    for text in (batch, log):
        assert encoded[:40] not in text
        assert not any(line in text for line in key_lines)
    # MLflow: the command's params and metrics, the accounting, the results as artifacts.
    mlflow = mlflow_run(
        project.mlflow,
        run.dotenv("growth-statistics", "platform-run.env")["PLATFORM_MLFLOW_RUN_ID"],
    )
    assert mlflow["info"]["status"] == "FINISHED"
    assert mlflow["params"]["fastest_strain"] == "mutant-b"
    assert mlflow["params"]["slurm.cpus"] == "2"
    assert mlflow["metrics"]["mean_growth_wild_type"] == summary["wild-type"]["mean"]
    # Provenance as GitLab compiled the include, and what really ran the CI job: local mode's
    # shell executor, so no image (the image the example names did not run).
    assert mlflow["tags"]["platform.template"] == f"slurm-job@{TEMPLATE_VERSION}"
    assert mlflow["tags"]["platform.template.sha"] == git_server.templates_sha
    assert mlflow["tags"]["platform.image"] == ""
    assert json.loads(mlflow["tags"]["platform.runtime"]) == this_runtime()
    assert mlflow["tags"]["slurm.job_id"] == slurm_id
    keys = [
        item["Key"]
        for page in project.s3.client().get_paginator("list_objects_v2").paginate(Bucket="mlflow")
        for item in page.get("Contents", [])
    ]
    assert any(mlflow["info"]["run_id"] in k and k.endswith("results/summary.json") for k in keys)
    # The bridge bills what Slurm accounted: elapsed x allocated CPUs x the CPU-hour price.
    elapsed = _seconds(accounted["RunTime"])
    cpus = int(accounted["NumCPUs"])
    assert cpus == 2
    line = _hpc_line(_invoice(run))
    assert line is not None
    assert Decimal(line["billable_seconds"]) - Decimal(before["billable_seconds"]) == elapsed * cpus
    assert line["jobs"] == before["jobs"] + 1
    expected = (Decimal(line["billable_seconds"]) * CPU_HOUR_PRICE / 3600).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP
    )
    assert Decimal(line["amount"]) == expected
    if before["jobs"] == 0:
        assert Decimal(line["amount"]) == (elapsed * cpus * CPU_HOUR_PRICE / 3600).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP
        )
    # The CI job that waited is billed on the zero-priced class, not a second time.
    waited = [line for line in _invoice(run)["lines"] if line["runner_class"] == "hpc-wait"]
    assert waited
    assert all(Decimal(line["amount"]) == 0 for line in waited)


def _invoice_of(project) -> dict:
    period = datetime.now(UTC).strftime("%Y-%m")
    status, document = project.bridge.admin_get(
        f"/api/v1/usage?client={TEST_CLIENT}&period={period}"
    )
    assert status == 200, document
    return document


def _seconds(runtime: str) -> int:
    days, _, clock = runtime.rpartition("-")
    hours, minutes, seconds = (int(part) for part in clock.split(":"))
    return int(days or 0) * 86400 + hours * 3600 + minutes * 60 + seconds


def _single_job(ci_project, cluster: HpcCluster, command: str, **inputs):
    return _project(
        ci_project,
        cluster,
        files={"input.txt": "some input\n"},
        ci={
            "include": [
                include(
                    "slurm-job",
                    image=IMAGE,
                    **cluster.inputs(command=command, stage_in="input.txt", **inputs),
                )
            ]
        },
        base64_key=False,
    )


def test_exit_code_3_fails_the_ci_job_with_state_exit_code_and_tail(
    ci_project, empty_queue
) -> None:
    project = _single_job(
        ci_project, empty_queue, "for i in $(seq 1 60); do echo line $i; done; exit 3"
    )

    run = project.run()

    job = run.job("slurm-job")
    assert job.status == "failed"
    assert re.search(r"Slurm job \d+ ended FAILED \(NonZeroExitCode\) with exit code 3", job.output)
    tail = job.output.split("last 40 lines of its output:", 1)[1]
    assert "line 60" in tail
    assert "line 21" in tail
    assert "line 20\n" not in tail
    assert empty_queue.slurm.queue() == []


def test_stage_in_twice_transfers_nothing_the_second_time(ci_project, empty_queue) -> None:
    project = _single_job(ci_project, empty_queue, "cat input.txt")

    first, second = project.run(), project.run()

    assert first.job("slurm-job").status == "success", first.job("slurm-job").output[-3000:]
    assert second.job("slurm-job").status == "success", second.job("slurm-job").output[-3000:]
    assert "Number of regular files transferred: 1" in first.job("slurm-job").output
    assert "Number of regular files transferred: 0" in second.job("slurm-job").output
    assert "Total transferred file size: 0 bytes" in second.job("slurm-job").output
    assert "some input" in second.job("slurm-job").output


def test_a_login_node_with_another_host_key_is_refused(
    ci_project, empty_queue, tmp_path: Path
) -> None:
    project = _single_job(ci_project, empty_queue, "echo must not run")
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    key_type, key = other.with_suffix(".pub").read_text().split()[:2]
    project.extra_variables["SLURM_SSH_KNOWN_HOSTS"] = (
        f"[127.0.0.1]:{empty_queue.login.port} {key_type} {key}\n"
    )

    run = project.run()

    job = run.job("slurm-job")
    assert job.status == "failed"
    assert (
        "presented a host key that does not match the one pinned in SLURM_SSH_KNOWN_HOSTS"
        in job.output
    )
    assert "refusing to connect" in job.output
    assert "Submitted Slurm job" not in job.output
    assert empty_queue.slurm.queue() == []


def test_a_slurm_job_past_its_time_limit_ends_as_timeout(ci_project, empty_queue) -> None:
    project = _single_job(ci_project, empty_queue, "echo sleeping; sleep 600", time_limit="1")

    run = project.run()

    job = run.job("slurm-job")
    assert job.status == "failed"
    assert re.search(r"Slurm job \d+ ended TIMEOUT", job.output), job.output[-3000:]
    assert "sleeping" in job.output
    accounted = parse_scontrol(
        empty_queue.slurm.run(
            "scontrol", "show", "job", "-o", _slurm_job_id(run, "slurm-job")
        ).stdout
    )
    assert accounted["JobState"] == "TIMEOUT"


def test_canceling_the_ci_job_cancels_the_slurm_job(ci_project, empty_queue) -> None:
    """GitLab's runner cancels a shell job with SIGTERM to the job's process group (then SIGKILL
    after a grace period); a terminal's Ctrl-C sends SIGINT to gitlab-ci-local's group. A SIGTERM
    to gitlab-ci-local's own pid alone would not reach the job's script (gitlab-ci-local exits
    and leaves its shell running), so the group is signalled, as GitLab does."""
    cluster = empty_queue
    project = _single_job(ci_project, cluster, "echo started; sleep 600")
    (job,) = gcl.plan(project.dir, project.variables())
    job_id, pipeline_id = 90_001, 90_000
    claims = gitlab_claims(
        job_id=job_id, project_path=project.path, pipeline_id=pipeline_id, sha=project.sha
    )
    variables = {
        **project.variables(),
        "BRIDGE_ID_TOKEN": project.issuer.mint(claims, project.bridge.url),
    }
    (project.dir / gcl.VARIABLES_FILE).write_text(json.dumps(variables))
    (project.dir / gcl.VARIABLES_FILE).chmod(0o600)
    log = project.dir.parent / "gcl.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                gcl.gitlab_ci_local(), "--shell-isolation", "--force-shell-executor",
                "--variable", f"CI_JOB_ID={job_id}", "--variable", f"CI_PIPELINE_ID={pipeline_id}",
                job.name,
            ],
            cwd=project.dir, env=gcl.job_environment(), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            slurm_id = _wait_for(lambda: _running_job(cluster), 120, log)
            _wait_for(lambda: "started" in log.read_text(), 60, log)
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            (project.dir / gcl.VARIABLES_FILE).unlink(missing_ok=True)

    _wait_for(lambda: cluster.slurm.queue() == [], 10, log)
    assert cluster.slurm.job(slurm_id)["JobState"] == "CANCELLED"


def _running_job(cluster: HpcCluster) -> str | None:
    done = cluster.slurm.run("squeue", "-h", "-t", "RUNNING", "-o", "%i")
    return done.stdout.split()[0] if done.stdout.split() else None


def _wait_for(probe, seconds: float, log: Path):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(
        f"not within {seconds} s; gitlab-ci-local's log:\n{log.read_text()[-3000:]}"
    )
