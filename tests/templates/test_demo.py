"""`make demo` end to end: `demo up` twice (the second reuses the services), then `demo down`."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.local_platform import REPO, TEMPLATE_VERSION
from tests.fixtures.postgres import new_cluster_dir

SUMMARY_KEYS = {"mlflow_url", "bridge_url", "admin_token", "run_id", "job_id", "client", "period"}


def _demo(command: str, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "local.demo", command, "--state-dir", str(state)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def state() -> Iterator[Path]:
    """Where the demo keeps its state: outside pytest's tmp dirs, whose 0700 parent the
    Postgres server (run as `postgres` when we are root) cannot enter."""
    base = new_cluster_dir()
    yield base / "demo"
    shutil.rmtree(base, ignore_errors=True)


def test_demo_runs_the_example_twice_and_stops_cleanly(state: Path) -> None:
    pids: list[int] = []
    try:
        first = _demo("up", state)
        assert first.returncode == 0, first.stdout[-5000:] + first.stderr[-3000:]
        summary = json.loads((state / "summary.json").read_text())
        assert set(summary) >= SUMMARY_KEYS
        assert summary["client"] == "demo-lab"
        assert summary["template_version"] == TEMPLATE_VERSION
        assert summary["mlflow_run_url"] in first.stdout
        assert "reports each job to the bridge itself" in first.stdout
        assert "trusted by this local bridge only" in first.stdout
        assert summary["run_id"] in json.dumps(summary["provenance"])
        # Only what really ran: the .venv on the shell executor, not the image the example names.
        chain = summary["provenance"]["provenance"]
        assert chain["image"] is None
        assert chain["runtime"]["executor"] == "shell"
        assert chain["runtime"]["python"] == platform.python_version()
        assert f"packages sha256:{chain['runtime']['packages_sha256']}" in first.stdout
        assert "0" * 64 not in json.dumps(summary["provenance"]) + first.stdout
        assert summary["usage"]["lines"], summary["usage"]

        second = _demo("up", state)
        assert second.returncode == 0, second.stdout[-5000:] + second.stderr[-3000:]
        assert "reusing them" in second.stdout
        again = json.loads((state / "summary.json").read_text())
        assert again["job_id"] != summary["job_id"]
        assert again["sha"] == summary["sha"]
        assert again["reproduced_previous_run"] is True
        assert "the same metrics as run" in second.stdout
        pids = [int(p.read_text().split()[0]) for p in (state / "services").glob("*.pid")]
        assert len(pids) == 5
    finally:
        stopped = _demo("down", state)
    assert stopped.returncode == 0, stopped.stderr
    assert not state.exists()
    assert [pid for pid in pids if _alive(pid)] == []
