"""What the `train` template adds to a job: a template job vs a bare job, same script.

Both run under gitlab-ci-local (shell executor) against the local platform that `make demo`
starts (MLflow, bridge, ID-token issuer), in a temporary directory. The template's extra work
is opening the MLflow run, closing it, posting the provenance to the bridge and its
after_script. Median of several alternating rounds, after one warm-up round each.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
import tempfile
from pathlib import Path

from local import gcl
from local.demo import Demo
from local.issuer import gitlab_claims
from tests.bench.table import Row

ROUNDS = 7
TARGET_SECONDS = 1.0
SCRIPT = "import statistics; print(statistics.fmean(range(200_000)))\n"
IMAGE = "registry.bench/platform/environments/python-ml@sha256:" + "cd" * 32


def _project(demo: Demo, tree: Path, work: Path) -> str:
    version, _ = demo.publish_templates()
    component = f"$CI_SERVER_FQDN/platform/pipeline-templates/train@{version}"
    tree.mkdir(parents=True)
    (tree / "work.py").write_text(SCRIPT)
    ci = {
        "include": [
            {"component": component, "inputs": {"image": IMAGE, "command": "python work.py"}}
        ],
        "bare": {"stage": "test", "script": ["python work.py"]},
    }
    (tree / ".gitlab-ci.yml").write_text(json.dumps(ci))
    return gcl.checkout(tree, work, f"{demo.git_url}/bench-lab/overhead.git")


def run() -> list[Row]:
    with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stdout(sys.stderr):
        Path(scratch).chmod(0o755)  # the Postgres server runs as `postgres` when we are root
        demo = Demo(Path(scratch) / "state")
        demo.start_services()
        try:
            work = Path(scratch) / "work"
            sha = _project(demo, Path(scratch) / "tree", work)
            bridge, issuer = demo.bridge(), demo.issuer()
            variables = {"MLFLOW_TRACKING_URI": demo.mlflow().url, "BRIDGE_URL": bridge.url}
            jobs = {job.name: job for job in gcl.plan(work, variables)}
            seconds: dict[str, list[float]] = {"train": [], "bare": []}
            job_id = 500_000
            for round_number in range(ROUNDS + 1):
                for name in ("bare", "train"):
                    job_id += 1
                    claims = gitlab_claims(
                        job_id=job_id, project_path="bench-lab/overhead", pipeline_id=1, sha=sha
                    )
                    token = issuer.mint(claims, bridge.url)
                    result = gcl.run_job(
                        work,
                        jobs[name],
                        job_id=job_id,
                        pipeline_id=1,
                        variables={**variables, "BRIDGE_ID_TOKEN": token},
                    )
                    if result.status != "success":
                        raise RuntimeError(f"{name} failed:\n{result.output[-3000:]}")
                    if round_number > 0:  # round 0 warms caches and fetches the component
                        seconds[name].append(result.duration)
        finally:
            demo.stop_services()
    template, bare = statistics.median(seconds["train"]), statistics.median(seconds["bare"])
    overhead = template - bare
    return [
        Row(
            benchmark="train template overhead per job (gitlab-ci-local)",
            measured=f"template job {template:.2f} s (median of {ROUNDS})",
            baseline=f"bare job {bare:.2f} s, same script",
            comparison=f"adds {overhead:.2f} s",
            target=f"< {TARGET_SECONDS:.0f} s added",
            met=overhead < TARGET_SECONDS,
        )
    ]


if __name__ == "__main__":
    from tests.bench.table import render

    print(render(run()))
