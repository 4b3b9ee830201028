"""Fixtures of the converge test: what every site shares (built once per run) and one site per
shipped inventory; the report printed at the end."""

from __future__ import annotations

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
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Host image, apt mirror, stand-in images in a registry, and the lock resolved from it."""
    started = time.monotonic()
    image = hostimage.build()
    apt_repo, fingerprint = aptrepo.build()
    tags = stand_ins.build_all()
    # The registry's storage is kept with the other caches: a push uploads only the layers
    # it does not hold yet, so only a changed stand-in costs time.
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
        REPORT["preparation_seconds"] = round(time.monotonic() - started)
        yield {
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
