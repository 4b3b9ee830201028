"""Fixtures of the converge test: what every site shares (built once per run) and one site per
shipped inventory; the report printed at the end.

`make test-deploy` runs the two inventories side by side (pytest-xdist, one worker per test
file): a deploy mostly waits (SSH round trips, health checks), so two sites on two cores take
little longer than one. The shared preparation runs under a file lock, so the second worker
finds the caches the first one built; each worker sends its part of the report to the
controller, which prints it."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy import aptrepo, hostimage, stand_ins
from tests.deploy.site import REPO, Deployment
from tests.fixtures.registry import running_registry

REPORT: dict[str, object] = {"sites": {}, "started": time.monotonic()}
SUBSTITUTES = [
    "local apt mirror (Debian closure, docker.io + trixie compose/buildx, gitlab-runner stand-in)",
    "loopback registry mirror (docker-registry) with stand-in images: nginx, postgres, "
    "python 3.11 (+wheelhouse, npm cache), python 3.12 (this machine's CPython, +wheelhouse), "
    "oauth2-proxy (401 to every visitor), hub dev image (the host image), "
    "minio (moto + admin calls), gitlab (API contract fake), cuda (never pulled)",
]


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Host image, apt mirror, stand-in images in a registry, and the lock resolved from it."""
    started = time.monotonic()
    aptrepo.cache_root().mkdir(parents=True, exist_ok=True)
    with (aptrepo.cache_root() / ".prepare.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # released when the file closes
        prepared = prepare(tmp_path_factory)
    REPORT["preparation_seconds"] = round(time.monotonic() - started)
    return prepared


def prepare(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    image = hostimage.build()
    apt_repo, fingerprint = aptrepo.build()
    tags = stand_ins.build_all()
    # The registry's storage is kept with the other caches: a push uploads only the layers
    # it does not hold yet, so only a changed stand-in costs time. Each host serves the same
    # storage through a registry of its own (hosts.py); this one only takes the pushes.
    workdir = aptrepo.cache_root() / "registry"
    lock = tmp_path_factory.mktemp("lock") / "images.lock.yml"
    with running_registry(workdir) as registry:
        names = stand_ins.push_all(registry, tags)
        dev_digest = stand_ins.push_dev_image(registry, image)
        subprocess.run(
            [
                sys.executable,
                str(REPO / "ansible/scripts/images.py"),
                "lock",
                "--from-registry",
                registry,
                "--lock",
                str(lock),
                "--only",
                ",".join(names),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    return {
        "image": image,
        "apt": apt_repo,
        "fingerprint": fingerprint,
        "registry_data": workdir / "data",
        "lock": lock,
        "dev_digest": dev_digest,
    }


@pytest.fixture(scope="module")
def deployment(
    request: pytest.FixtureRequest, shared: dict, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    inventory = request.module.INVENTORY
    site = Deployment(
        inventory,
        tmp_path_factory.mktemp(inventory),
        shared["image"],
        shared["apt"],
        shared["fingerprint"],
        shared["registry_data"],
        shared["lock"],
        shared["dev_digest"],
    )
    started = time.monotonic()
    entry: dict[str, object] = {"hosts": site.host_names(), "runs": []}
    REPORT["sites"][inventory] = entry  # type: ignore[index]
    try:
        site.start()
        entry["hosts_ready_seconds"] = round(time.monotonic() - started)
        secrets = site.make("secrets")
        assert secrets.returncode == 0, secrets.tail()
        site.report = entry  # type: ignore[attr-defined]
        yield site
    finally:
        entry["seconds"] = round(time.monotonic() - started)
        if os.environ.get("DEPLOYTEST_KEEP"):
            # For debugging a failure: the hosts, mirrors and inventory stay; `make deploy
            # INVENTORY=<workdir>/inventory SECRETS=<workdir>/secrets` reruns against them.
            print(f"\nconverge test: site kept in {site.workdir} (DEPLOYTEST_KEEP)")
        else:
            site.stop()


def record(site: Deployment, label: str, run) -> None:
    site.report["runs"].append(  # type: ignore[attr-defined]
        {
            "run": label,
            "seconds": round(run.seconds),
            "recap": {
                h: {k: v[k] for k in ("ok", "changed", "failed")} for h, v in run.recap.items()
            },
        }
    )


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In an xdist worker: hand this worker's sites to the controller."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None and REPORT["sites"]:
        workeroutput["converge_report"] = json.dumps(
            {k: REPORT.get(k) for k in ("sites", "preparation_seconds")}, default=str
        )


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """In the xdist controller: merge a worker's sites into the report."""
    part = getattr(node, "workeroutput", {}).get("converge_report")
    if part:
        part = json.loads(part)
        REPORT["sites"].update(part["sites"])  # type: ignore[union-attr]
        REPORT["preparation_seconds"] = max(
            REPORT.get("preparation_seconds") or 0, part["preparation_seconds"] or 0
        )


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not REPORT["sites"]:
        return
    write = terminalreporter.write_line
    write("")
    write("==== converge test report ====")
    write(
        "preparation (host image, apt mirror, stand-ins, registry, lock): "
        f"{REPORT.get('preparation_seconds', '?')} s"
    )
    for name, entry in REPORT["sites"].items():  # type: ignore[union-attr]
        write(
            f"inventory {name}: hosts {', '.join(entry['hosts'])}; "
            f"{entry.get('seconds', '?')} s in all"
        )
        for run in entry["runs"]:
            cells = "; ".join(
                f"{h} ok={r['ok']} changed={r['changed']} failed={r['failed']}"
                for h, r in run["recap"].items()
            )
            write(f"  {run['run']:<28} {run['seconds']:>5} s  {cells}")
    write("substitutes: " + " | ".join(SUBSTITUTES))
    write(f"duration: {round(time.monotonic() - REPORT['started'])} s")  # type: ignore[operator]
    Path(config.rootpath / ".converge-report.json").write_text(
        json.dumps(REPORT, indent=2, default=str)
    )
