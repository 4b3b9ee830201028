"""Run a project's pipeline with gitlab-ci-local, one job at a time, as a local GitLab would.

GitLab gives each job an id before it starts and mints the job's CI ID tokens (`id_tokens:`)
for that id. gitlab-ci-local does neither (its job ids are random and it ignores `id_tokens:`),
so this module plans the pipeline (`--list-json`, `--preview`), assigns ids, and runs each job
in its own gitlab-ci-local invocation with its ids, its tokens and the shared variables in a
variables file (mode 0600, removed afterwards: tokens and keys stay out of `ps`). Artifacts and
dotenv reports pass between the invocations through gitlab-ci-local's state directory
(`--shell-isolation`), exactly as between the jobs of one invocation.

Jobs run with the shell executor (`--force-shell-executor`) with the Python of this
repository's .venv, not in the environment image a job names. gitlab-ci-local leaves
`CI_DISPOSABLE_ENVIRONMENT` unset, as GitLab does for the shell executor, so the `train`
template records the runtime it measured (executor, Python, package-set hash) and no image.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from local.gitserver import publish

REPO_ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = ".gitlab-ci-local"
VARIABLES_FILE = ".gitlab-ci-local-variables.yml"
# Predefined variables we set ourselves, per job, the way GitLab would.
_OWN_PREDEFINED = ("CI_JOB_ID", "CI_JOB_URL", "CI_PIPELINE_ID", "CI_PIPELINE_IID", "CI_PROJECT_DIR")


class PipelineError(RuntimeError):
    """gitlab-ci-local refused the pipeline before running any job (bad config or inputs)."""


def gitlab_ci_local() -> str:
    """The pinned gitlab-ci-local that `make setup` installs into .venv."""
    pinned = REPO_ROOT / ".venv" / "bin" / "gitlab-ci-local"
    if pinned.exists():
        return str(pinned)
    found = shutil.which("gitlab-ci-local")
    if found is None:
        raise RuntimeError("gitlab-ci-local not found; run `make setup`")
    return found


def job_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment gitlab-ci-local and its shell jobs run in.

    Every variable named GCL_* would be read by gitlab-ci-local as one of its options, so none
    is passed on. Nor is CI_DISPOSABLE_ENVIRONMENT, which a GitLab job we may run inside sets
    about itself: these shell jobs run in no image. This interpreter's bin directory comes
    first on PATH, so `python` in a job is the .venv's.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GCL_") and k != "CI_DISPOSABLE_ENVIRONMENT"
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["FORCE_COLOR"] = "0"
    env.update(extra or {})
    return env


@dataclass
class JobResult:
    name: str
    stage: str
    job_id: int
    pipeline_id: int
    exit_code: int
    started_at: datetime
    finished_at: datetime
    output: str

    @property
    def status(self) -> str:
        return "success" if self.exit_code == 0 else "failed"

    @property
    def duration(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


@dataclass
class PlannedJob:
    name: str
    stage: str
    needs: list[str]
    id_tokens: dict[str, str] = field(default_factory=dict)  # variable -> audience (unexpanded)


def checkout(source: Path, work: Path, remote_url: str) -> str:
    """Make `work` a git checkout of `source`'s files with `origin` at `remote_url`.

    The commit is published with a fixed author and date, so the same files give the same SHA:
    a rerun of the same content is a rerun of the same commit. Returns that SHA.
    """
    bare = work.parent / f"{work.name}.git"
    sha = publish(source, bare)
    if work.exists():
        shutil.rmtree(work)
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True)
    for args in (
        ["remote", "set-url", "origin", remote_url],
        ["config", "user.name", "local mode"],
        ["config", "user.email", "local-mode@localhost"],
    ):
        subprocess.run(["git", *args], cwd=work, check=True)
    shutil.rmtree(bare)
    return sha


def _run_gcl(
    project: Path, args: list[str], env: Mapping[str, str] | None, timeout: float
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [gitlab_ci_local(), *args],
        cwd=project,
        capture_output=True,
        text=True,
        env=job_environment(env),
        timeout=timeout,
        check=False,
    )


def _write_variables(project: Path, variables: Mapping[str, str]) -> Path:
    path = project / VARIABLES_FILE
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as f:
        # JSON is YAML; gitlab-ci-local reads this file with the failsafe (all-strings) schema.
        json.dump({k: str(v) for k, v in variables.items()}, f)
    return path


def plan(
    project: Path, variables: Mapping[str, str], env: Mapping[str, str] | None = None
) -> list[PlannedJob]:
    """The jobs that would run, in an order that respects stages and `needs`.

    Raises PipelineError with gitlab-ci-local's message when the configuration or an input is
    invalid: then no job runs at all, as in GitLab.
    """
    _write_variables(project, variables)
    try:
        listed = _list_json(project, env)
        if listed.returncode != 0:
            raise PipelineError(_error_text(listed))
        preview = _run_gcl(project, ["--preview"], env, timeout=120)
        if preview.returncode != 0:
            raise PipelineError(_error_text(preview))
    finally:
        (project / VARIABLES_FILE).unlink(missing_ok=True)
    config = yaml.safe_load(preview.stdout[preview.stdout.index("---") :])
    stages = config.get("stages", [])
    jobs = [
        PlannedJob(
            name=entry["name"],
            stage=entry["stage"],
            needs=[need["job"] for need in entry.get("needs") or []],
            id_tokens={
                name: token["aud"]
                for name, token in (config.get(entry["name"], {}).get("id_tokens") or {}).items()
            },
        )
        for entry in json.loads(listed.stdout)
        if entry["when"] not in {"never", "manual"}
    ]
    order: list[PlannedJob] = []
    pending = sorted(jobs, key=lambda job: stages.index(job.stage))
    while pending:
        done = {job.name for job in order}
        ready = next(
            job
            for job in pending
            if all(need in done or need not in {j.name for j in pending} for need in job.needs)
        )
        order.append(ready)
        pending.remove(ready)
    return order


def _list_json(project: Path, env: Mapping[str, str] | None) -> subprocess.CompletedProcess[str]:
    """`--list-json`, which also fetches the pipeline's components.

    gitlab-ci-local fetches a pipeline's includes concurrently, and components of one project
    and ref race to create the same directory (`cp: cannot create directory ...: File
    exists`). The winner's files stay in place and are not fetched again, so another attempt
    completes the fetch.
    """
    for _attempt in range(3):
        listed = _run_gcl(project, ["--list-json"], env, timeout=120)
        if listed.returncode == 0 or "File exists" not in listed.stderr + listed.stdout:
            break
    return listed


def _error_text(done: subprocess.CompletedProcess[str]) -> str:
    lines = [
        line
        for line in (done.stderr + done.stdout).splitlines()
        if line.strip()
        and "origin/HEAD" not in line
        and "default remote branch" not in line
        and "Command failed with exit code 128: git symbolic-ref" not in line
    ]
    return "\n".join(lines) or f"gitlab-ci-local exited with {done.returncode}"


def expand(text: str, variables: Mapping[str, str]) -> str:
    """GitLab-style `$VAR` / `${VAR}` expansion (used for `id_tokens:aud`)."""
    return re.sub(
        r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?",
        lambda m: variables.get(m.group(1), m.group(0)),
        text,
    )


def run_job(
    project: Path,
    job: PlannedJob,
    *,
    job_id: int,
    pipeline_id: int,
    variables: Mapping[str, str],
    env: Mapping[str, str] | None = None,
    timeout: float = 600,
) -> JobResult:
    """Run one job of `project` with gitlab-ci-local under the given ids."""
    server_url = variables.get("CI_SERVER_URL") or _server_url(project)
    path = project_path(project)
    builds = project / STATE_DIR / "builds" / re.sub(r"[^\w-]+", "-", job.name)
    own = {
        "CI_JOB_ID": str(job_id),
        "CI_JOB_URL": f"{server_url}/{path}/-/jobs/{job_id}",
        "CI_PIPELINE_ID": str(pipeline_id),
        "CI_PIPELINE_IID": str(pipeline_id),
        "CI_PROJECT_DIR": str(builds),
    }
    # The ids go on the command line (not secret); the variables file would take a value that
    # names an existing path, like CI_PROJECT_DIR on a rerun, for a file variable.
    _write_variables(project, variables)
    started = datetime.now(UTC)
    try:
        done = _run_gcl(
            project,
            [
                "--shell-isolation",
                "--force-shell-executor",
                "--no-artifacts-to-source",
                "--ignore-predefined-vars",
                ",".join(_OWN_PREDEFINED),
                *[arg for name, value in own.items() for arg in ("--variable", f"{name}={value}")],
                job.name,
            ],
            env,
            timeout=timeout,
        )
    finally:
        (project / VARIABLES_FILE).unlink(missing_ok=True)
    finished = datetime.now(UTC)
    output = done.stdout + done.stderr
    passed = done.returncode == 0 and re.search(rf"PASS\s+{re.escape(job.name)}\b", output)
    return JobResult(
        name=job.name,
        stage=job.stage,
        job_id=job_id,
        pipeline_id=pipeline_id,
        exit_code=0 if passed else (done.returncode or 1),
        started_at=started,
        finished_at=finished,
        output=output,
    )


TokenMinter = Callable[[PlannedJob, int, str], str]
"""(job, job_id, audience) -> a signed ID token for that job."""


def run_pipeline(
    project: Path,
    *,
    first_job_id: int,
    pipeline_id: int,
    variables: Mapping[str, str],
    mint: TokenMinter | None = None,
    env: Mapping[str, str] | None = None,
    on_job_start: Callable[[PlannedJob, int], Any] | None = None,
    on_job_end: Callable[[JobResult], Any] | None = None,
) -> list[JobResult]:
    """Plan, then run the jobs in order; stops after the first failed job (later ones skip)."""
    results: list[JobResult] = []
    for offset, job in enumerate(plan(project, variables, env)):
        job_id = first_job_id + offset
        job_variables = dict(variables)
        for name, audience in job.id_tokens.items():
            if mint is not None:
                job_variables[name] = mint(job, job_id, expand(audience, variables))
        if on_job_start is not None:
            on_job_start(job, job_id)
        result = run_job(
            project, job, job_id=job_id, pipeline_id=pipeline_id, variables=job_variables, env=env
        )
        results.append(result)
        if on_job_end is not None:
            on_job_end(result)
        if result.exit_code != 0:
            break
    return results


def project_path(project: Path) -> str:
    """`group/project` of a checkout, from its origin URL (as gitlab-ci-local derives it)."""
    return re.sub(r"^https?://[^/]+/", "", _remote(project)).removesuffix(".git")


def _remote(project: Path) -> str:
    return subprocess.run(
        ["git", "remote", "get-url", "origin"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _server_url(project: Path) -> str:
    match = re.match(r"(https?://[^/]+)/", _remote(project))
    if match is None:
        raise ValueError(f"origin of {project} is not an http(s) URL")
    return match.group(1)
