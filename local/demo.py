"""`make demo`: the whole platform on loopback, running the example pipeline end to end.

    python -m local.demo up      # start (or reuse) the services, run the pipeline
    python -m local.demo down    # stop every service this demo started, remove .demo/

`up` starts a throwaway Postgres, an S3 endpoint (moto), an MLflow server (Postgres backend, S3
artifacts), the bridge, a local CI ID-token issuer and a git server that serves the pipeline
templates as the project `platform/pipeline-templates` (tag = pipeline-templates/VERSION). It
then runs `examples/breast-cancer` through gitlab-ci-local, reports each job to the bridge,
prints the MLflow run, its provenance and its usage line, and writes `.demo/summary.json`.
The services keep running until `down`; a second `up` reuses them and runs a new pipeline.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from local import gcl
from local.bridge_server import LocalBridge, job_hook
from local.gitserver import publish
from local.issuer import LocalIssuer, gitlab_claims
from local.mlflow import LocalMlflow
from local.ports import free_port
from local.service import Daemon
from local.stack import LocalStack

REPO = gcl.REPO_ROOT
EXAMPLE = REPO / "examples" / "breast-cancer"
TEMPLATES = REPO / "pipeline-templates"
PROJECT_PATH = "demo-lab/breast-cancer"
CLIENT = "demo-lab"
DATASET_BUCKET = "datasets"
RATES = """\
currency: EUR
classes:
  - {name: gpu, match_tags: [gpu], per_minute: "0.50"}
  - {name: standard, match_tags: [], per_minute: "0.02"}
"""
LOCAL_MODE_NOTES = [
    "There is no GitLab in local mode: the demo reports each job to the bridge itself, with the "
    "Job Hook payload GitLab would send (POST /hooks/gitlab).",
    "gitlab-ci-local mints no CI ID tokens: the demo signs them with a key generated in "
    ".demo/issuer/, whose JWKS is served on loopback and trusted by this local bridge only.",
    "Jobs run with gitlab-ci-local's shell executor in this repository's .venv, not in the "
    "environment image the pipeline names: the provenance records no image, but the executor, "
    "the Python version and the hash of the installed package set that really ran.",
]


def say(message: str = "") -> None:
    print(message, flush=True)


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    started = time.monotonic()
    say(f"==> {title}")
    yield
    say(f"    done in {time.monotonic() - started:.1f} s")


class Demo(LocalStack):
    # ---- the services ------------------------------------------------------------------------

    def mlflow(self) -> LocalMlflow:
        return LocalMlflow(
            self.services_dir,
            backend_url=self.postgres().url("mlflow"),
            s3=self.s3(),
            artifacts_destination="s3://mlflow/artifacts",
            port=self.state["ports"]["mlflow"],
        )

    def issuer(self) -> LocalIssuer:
        return LocalIssuer(self.state_dir / "issuer", port=self.state["ports"]["issuer"])

    def issuer_daemon(self) -> Daemon:
        return Daemon("issuer", self.issuer().daemon_argv(), self.services_dir)

    def bridge(self) -> LocalBridge:
        issuer = self.issuer()
        return LocalBridge(
            self.services_dir,
            database_url=self.postgres().url("bridge"),
            rates_file=self.state_dir / "rates.yml",
            webhook_token=self.state["webhook_token"],
            admin_token=self.state["admin_token"],
            issuer_url=issuer.url,
            jwks_url=issuer.jwks_url,
            port=self.state["ports"]["bridge"],
        )

    @property
    def git_root(self) -> Path:
        return self.state_dir / "git"

    def git_daemon(self) -> Daemon:
        argv = [sys.executable, "-m", "local.gitserver", "--root", str(self.git_root)]
        return Daemon("git", [*argv, "--port", str(self.state["ports"]["git"])], self.services_dir)

    @property
    def git_url(self) -> str:
        return f"http://127.0.0.1:{self.state['ports']['git']}"

    def daemons(self) -> list[Daemon]:
        return [
            self.bridge().daemon,
            self.git_daemon(),
            self.issuer_daemon(),
            self.mlflow().daemon,
            self.s3().daemon,
        ]

    def healthy(self) -> bool:
        """Every service of a previous `up` is still running and answering."""
        if not self.state.get("ports"):
            return False
        if not all(daemon.is_running() for daemon in self.daemons()):
            return False
        try:
            with psycopg.connect(self.postgres().url("bridge"), connect_timeout=3):
                pass
            for url in (
                f"{self.mlflow().url}/health",
                f"{self.bridge().url}/healthz",
                f"{self.issuer().url}/healthz",
                f"{self.git_url}/healthz",
            ):
                with urllib.request.urlopen(url, timeout=3):  # noqa: S310 - loopback
                    pass
        except (OSError, psycopg.Error):
            return False
        return True

    def start_services(self) -> None:
        self.state = {
            "ports": {
                name: free_port()
                for name in ("postgres", "s3", "mlflow", "issuer", "bridge", "git")
            },
            "webhook_token": secrets.token_urlsafe(24),
            "admin_token": secrets.token_urlsafe(24),
            "next_pipeline_id": 1,
            "next_job_id": 1001,
        }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # The Postgres server runs as the `postgres` user when we are root: it must reach its dir.
        self.state_dir.chmod(0o755)
        self.save()

        with step("Postgres (throwaway cluster on loopback)"):
            postgres = self.postgres()
            postgres.start()
            with psycopg.connect(postgres.url(), autocommit=True) as conn:
                for database in ("mlflow", "bridge"):
                    conn.execute(f"CREATE DATABASE {database}")  # fixed names
        with step("S3 endpoint (moto server; MinIO in production)"):
            s3 = self.s3()
            s3.start()
            s3.ensure_bucket(DATASET_BUCKET)
        # MLflow's first start (imports, then its schema migrations) is the slowest step: it
        # runs while the other services start and the templates are published; `up` waits
        # for it before the pipeline.
        with step("MLflow server (Postgres backend, S3 artifacts): starting in the background"):
            self.mlflow().launch()
        with step("Local CI ID-token issuer (JWKS on loopback)"):
            self.issuer().key()
            issuer_daemon = self.issuer_daemon()
            issuer_daemon.start()
            issuer_daemon.wait_for_http(f"{self.issuer().url}/healthz", 30)
        with step("Bridge (migrate, serve, billing client)"):
            (self.state_dir / "rates.yml").write_text(RATES)
            bridge = self.bridge()
            bridge.start()
            self.state["client_token"] = bridge.add_client(CLIENT)
            self.save()
        with step("Git server for the templates project (smart HTTP on loopback)"):
            git = self.git_daemon()
            git.start()
            git.wait_for_http(f"{self.git_url}/healthz", 30)

    def stop_services(self) -> list[str]:
        stopped = []
        if self.state.get("ports"):
            for daemon in self.daemons():
                if daemon.is_running():
                    stopped.append(daemon.name)
                daemon.stop()
            postgres = self.postgres()
            if postgres.is_running():
                stopped.append("postgres")
            postgres.destroy()
        return stopped

    # ---- one pipeline ------------------------------------------------------------------------

    def publish_templates(self) -> tuple[str, str]:
        version = (TEMPLATES / "VERSION").read_text().strip()
        sha = publish(
            TEMPLATES, self.git_root / "platform" / "pipeline-templates.git", tags=[version]
        )
        return version, sha

    def publish_dataset(self) -> list[str]:
        """Put the example's input into the content-addressed store; returns the digests."""
        data_dir = self.state_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        csv_file = data_dir / "breast_cancer.csv"
        subprocess.run(
            [sys.executable, str(EXAMPLE / "prepare_data.py"), str(csv_file)],
            check=True,
            capture_output=True,
        )
        digest = hashlib.sha256(csv_file.read_bytes()).hexdigest()
        pinned = (EXAMPLE / "datasets.sha256").read_text()
        if digest not in pinned:
            raise SystemExit(
                f"examples/breast-cancer/datasets.sha256 does not pin {digest}, the digest of the "
                "CSV this scikit-learn writes: regenerate it with prepare_data.py"
            )
        self.s3().client().put_object(
            Bucket=DATASET_BUCKET, Key=f"sha256/{digest}", Body=csv_file.read_bytes()
        )
        return [digest]

    def run_pipeline(self) -> dict[str, Any]:
        work = self.state_dir / "work" / "breast-cancer"
        sha = gcl.checkout(EXAMPLE, work, f"{self.git_url}/{PROJECT_PATH}.git")
        pipeline_id = self.state["next_pipeline_id"]
        first_job_id = self.state["next_job_id"]
        issuer, bridge, s3 = self.issuer(), self.bridge(), self.s3()
        variables = {
            "MLFLOW_TRACKING_URI": self.mlflow().url,
            "BRIDGE_URL": bridge.url,
            **s3.client_env(),
        }

        def mint(job: gcl.PlannedJob, job_id: int, audience: str) -> str:
            claims = gitlab_claims(
                job_id=job_id, project_path=PROJECT_PATH, pipeline_id=pipeline_id, sha=sha
            )
            return issuer.mint(claims, audience, ttl=3600)

        def started(job: gcl.PlannedJob, job_id: int) -> None:
            say(f"    {job.name} (stage {job.stage}, job {job_id}) running ...")

        def finished(result: gcl.JobResult) -> None:
            say(f"    {result.name}: {result.status} in {result.duration:.1f} s")
            status, answer = bridge.report_job(job_hook(result, project_path=PROJECT_PATH, sha=sha))
            if status >= 300:
                raise SystemExit(f"The bridge refused the job webhook ({status}): {answer}")

        say(f"    pipeline {pipeline_id} of {PROJECT_PATH} at commit {sha[:12]}")
        results = gcl.run_pipeline(
            work,
            first_job_id=first_job_id,
            pipeline_id=pipeline_id,
            variables=variables,
            mint=mint,
            on_job_start=started,
            on_job_end=finished,
        )
        self.state["next_pipeline_id"] = pipeline_id + 1
        self.state["next_job_id"] = first_job_id + 100
        self.save()
        failed = [r for r in results if r.status != "success"]
        if failed:
            say(failed[0].output[-4000:])
            raise SystemExit(f"job {failed[0].name} failed; its output is above")
        train = next(r for r in results if r.name == "train")
        dotenv = work / ".gitlab-ci-local" / "artifacts" / "train" / ".gitlab-ci-reports"
        run_env = dict(
            line.split("=", 1)
            for line in (dotenv / "dotenv" / "platform-run.env").read_text().splitlines()
            if "=" in line
        )
        return {
            "sha": sha,
            "pipeline_id": pipeline_id,
            "results": results,
            "train": train,
            "run_id": run_env["PLATFORM_MLFLOW_RUN_ID"],
            "experiment_id": run_env["PLATFORM_MLFLOW_EXPERIMENT_ID"],
        }

    def run_metrics(self, run_id: str) -> dict[str, float]:
        url = f"{self.mlflow().url}/api/2.0/mlflow/runs/get?run_id={run_id}"
        with urllib.request.urlopen(url, timeout=30) as answer:  # noqa: S310 - loopback
            run = json.load(answer)["run"]
        return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}

    # ---- the commands ------------------------------------------------------------------------

    def up(self) -> dict[str, Any]:
        if self.healthy():
            say(f"==> Services of the previous demo are running: reusing them ({self.state_dir})")
        else:
            if self.state.get("ports"):
                say("==> Services of a previous demo are gone or unhealthy: starting afresh")
                self.stop_services()
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.start_services()
        with step("Publish the pipeline templates and the example's dataset"):
            version, templates_sha = self.publish_templates()
            say(f"    platform/pipeline-templates@{version} = {templates_sha[:12]}")
            digests = self.publish_dataset()
            say(f"    s3://{DATASET_BUCKET}/sha256/{digests[0]}")
        with step("MLflow server ready (the first start takes ~20 s)"):
            self.mlflow().wait_until_ready()
        with step("Run examples/breast-cancer with gitlab-ci-local (shell executor)"):
            for note in LOCAL_MODE_NOTES:
                say(f"    note: {note}")
            run = self.run_pipeline()
        return self.report(run, version)

    def report(self, run: dict[str, Any], template_version: str) -> dict[str, Any]:
        bridge, mlflow = self.bridge(), self.mlflow()
        train: gcl.JobResult = run["train"]
        period = train.finished_at.strftime("%Y-%m")
        _, provenance = bridge.request(
            "GET", f"/api/v1/jobs/{train.job_id}", token=self.state["admin_token"]
        )
        _, usage = bridge.request(
            "GET", f"/api/v1/usage?client={CLIENT}&period={period}", token=self.state["admin_token"]
        )
        metrics = self.run_metrics(run["run_id"])
        previous = self.state.get("previous_runs", {}).get(run["sha"])
        run_url = f"{mlflow.url}/#/experiments/{run['experiment_id']}/runs/{run['run_id']}"
        summary = {
            "mlflow_url": mlflow.url,
            "mlflow_run_url": run_url,
            "bridge_url": bridge.url,
            "admin_token": self.state["admin_token"],
            "client": CLIENT,
            "client_token": self.state["client_token"],
            "period": period,
            "run_id": run["run_id"],
            "experiment_id": run["experiment_id"],
            "job_id": train.job_id,
            "pipeline_id": run["pipeline_id"],
            "sha": run["sha"],
            "project_path": PROJECT_PATH,
            "template_version": template_version,
            "jobs": [
                {"name": r.name, "job_id": r.job_id, "status": r.status, "seconds": r.duration}
                for r in run["results"]
            ],
            "metrics": metrics,
            "reproduced_previous_run": None if previous is None else previous["metrics"] == metrics,
            "provenance": provenance,
            "usage": usage,
            "local_mode": LOCAL_MODE_NOTES,
        }
        self.state.setdefault("previous_runs", {})[run["sha"]] = {
            "run_id": run["run_id"],
            "metrics": metrics,
        }
        self.save()
        summary_file = self.state_dir / "summary.json"
        descriptor = os.open(summary_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as f:
            json.dump(summary, f, indent=2, default=str)
        self.print_summary(summary, previous)
        return summary

    def print_summary(self, summary: dict[str, Any], previous: dict[str, Any] | None) -> None:
        say()
        say("MLflow run:   " + summary["mlflow_run_url"])
        for name, value in sorted(summary["metrics"].items()):
            say(f"    {name:<18} {value:.4f}")
        if previous is not None:
            verdict = (
                "the same metrics" if summary["reproduced_previous_run"] else "DIFFERENT metrics"
            )
            say(f"    rerun of commit {summary['sha'][:12]}: {verdict} as run {previous['run_id']}")
        say(f"Provenance:   GET {summary['bridge_url']}/api/v1/jobs/{summary['job_id']}")
        for line in provenance_lines(summary["provenance"]):
            say(f"    {line}")
        query = f"client={CLIENT}&period={summary['period']}"
        say(f"Usage:        GET {summary['bridge_url']}/api/v1/usage?{query}")
        usage = summary["usage"]
        if isinstance(usage, dict) and "lines" in usage:
            for line in usage["lines"]:
                say(
                    f"    {usage['client']} {usage['period']} {line['runner_class']}: "
                    f"{line['jobs']} jobs, {line['billable_seconds']} s, "
                    f"{line['amount']} {usage['currency']} (exact {line['exact_amount']})"
                )
            say(f"    total {usage['total']} {usage['currency']}")
        else:
            say(f"    {usage}")
        say()
        say(f"Summary: {self.state_dir / 'summary.json'} (admin token inside; mode 0600)")
        say("The services keep running; stop them with `make demo-stop`.")

    def down(self) -> None:
        stopped = self.stop_services()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        what = ", ".join(stopped) if stopped else "nothing was running"
        say(f"Stopped: {what}; removed {self.state_dir}")


def provenance_lines(job: dict[str, Any]) -> list[str]:
    """The chain of `GET /api/v1/jobs/{id}` in a few lines (the whole answer is in summary.json)."""
    chain = job.get("provenance") if isinstance(job, dict) else None
    if not chain:
        return [f"the bridge has no provenance for this job: {job}"]
    lines = [
        f"job        {job['id']} ({job.get('name')}): {job['status']}, "
        f"{job.get('billable_seconds')} s billable to {job['client']}",
        f"pipeline   {chain['pipeline_id']} of {chain['project_path']} on {chain['ref']}",
        f"commit     {chain['sha']}",
        runtime_line(chain),
        "template   {name}@{reference} (version {version}, commit {sha})".format(
            **chain["template"]
        ),
    ]
    lines += [f"dataset    {d['name']} sha256:{d['sha256']}" for d in chain["datasets"]]
    lines.append(f"MLflow run {chain['mlflow']['run_url'] or chain['mlflow']['run_id']}")
    return lines


def runtime_line(chain: dict[str, Any]) -> str:
    """What the job ran in: its image, or (no image ran) the runtime it measured."""
    if chain.get("image"):
        return f"image      {chain['image']}"
    runtime = chain.get("runtime") or {}
    return (
        f"runtime    {runtime.get('executor')} executor, Python {runtime.get('python')}, "
        f"packages sha256:{runtime.get('packages_sha256')} (no image ran)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--state-dir", type=Path, default=REPO / ".demo")
    args = parser.parse_args(argv)
    demo = Demo(args.state_dir.resolve())
    if args.command == "up":
        demo.up()
    else:
        demo.down()


if __name__ == "__main__":
    main()
