"""The converge test's steps, shared by both inventories (test_single_host, test_example):
a fresh deploy, a second run that changes nothing, the post-deploy checks through nginx, a
backup, and a run killed mid-way that the next run completes. Tests of one module run in
order on one site."""

from __future__ import annotations

import pytest

from tests.deploy import checks
from tests.deploy.conftest import record
from tests.deploy.site import Deployment, Run

DEPLOY_TIMEOUT = 3600


def assert_converged(run: Run, hosts: list[str]) -> None:
    assert run.returncode == 0, run.tail()
    assert set(hosts) <= set(run.recap), run.tail()
    failed = {h: r for h, r in run.recap.items() if r["failed"] or r["unreachable"]}
    assert not failed, f"failed hosts {failed}\n{run.tail()}"


class ConvergeSteps:
    @pytest.mark.timeout(DEPLOY_TIMEOUT)
    def test_first_deploy_converges(self, deployment: Deployment) -> None:
        run = deployment.make("deploy", timeout=DEPLOY_TIMEOUT)
        record(deployment, "first deploy", run)
        assert_converged(run, deployment.host_names())
        deployment.first_done = True  # type: ignore[attr-defined]

    @pytest.mark.timeout(DEPLOY_TIMEOUT)
    def test_second_deploy_changes_nothing(self, deployment: Deployment) -> None:
        if not getattr(deployment, "first_done", False):
            pytest.fail("the first deploy did not converge")
        run = deployment.make("deploy", timeout=DEPLOY_TIMEOUT)
        record(deployment, "second deploy", run)
        assert_converged(run, deployment.host_names())
        changed = {h: r["changed"] for h, r in run.recap.items() if r["changed"]}
        assert not changed, f"second run changed {changed}: {run.changed_tasks()}"

    @pytest.mark.timeout(600)
    def test_services_answer_through_nginx(self, deployment: Deployment) -> None:
        https = checks.Https(deployment)
        checks.mlflow_health(https)
        checks.mlflow_api_needs_a_gitlab_identity(https)
        checks.mlflow_run_logged_with_a_ci_id_token(https)
        checks.bridge_ready(https)
        checks.job_hook_recorded(https)
        checks.s3_put_get(https)

    @pytest.mark.timeout(600)
    def test_collector_proxy_is_read_only(self, deployment: Deployment) -> None:
        for runner in deployment.runner_hosts():
            checks.collector_proxy(deployment, runner)

    @pytest.mark.timeout(1200)
    def test_backup_lands_in_the_backup_bucket(self, deployment: Deployment) -> None:
        https = checks.Https(deployment)
        before = set(checks.backup_objects(https))
        run = deployment.make("backup", timeout=1200)
        record(deployment, "make backup", run)
        assert_converged(run, [deployment.service_host().name])
        assert set(checks.backup_objects(https)) - before, run.tail()

    @pytest.mark.timeout(DEPLOY_TIMEOUT)
    def test_killed_deploy_is_completed_by_the_next(self, deployment: Deployment) -> None:
        """A change whose effect comes later in the run (new rates: the bridge must restart),
        the run SIGKILLed right after writing it; the next run must apply it, and the one after
        that change nothing."""
        deployment.set_site_options({"bridge_rates": KILL_RATES})
        killed = deployment.make("deploy", kill_after_change_in="Write the rates file")
        record(deployment, "deploy killed after a change", killed)
        assert killed.returncode != 0, "the run was not killed"
        written = checks.file_mtime(deployment, "/opt/platform/bridge/rates.yml")
        run = deployment.make("deploy", timeout=DEPLOY_TIMEOUT)
        record(deployment, "deploy after the kill", run)
        assert_converged(run, deployment.host_names())
        for service in ("bridge", "bridge-reconcile"):
            assert checks.started_at(deployment, service) >= written, (
                f"{service} still runs the old rates"
            )
        again = deployment.make("deploy", timeout=DEPLOY_TIMEOUT)
        record(deployment, "deploy once more", again)
        assert_converged(again, deployment.host_names())
        changed = {h: r["changed"] for h, r in again.recap.items() if r["changed"]}
        assert not changed, f"changed {changed}: {again.changed_tasks()}"


KILL_RATES = {
    "currency": "EUR",
    "classes": [
        {"name": "gpu", "match_tags": ["gpu"], "per_minute": "0.55"},
        {"name": "standard", "match_tags": [], "per_minute": "0.03"},
    ],
    "clients": {},
}
