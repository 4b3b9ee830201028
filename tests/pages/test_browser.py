"""The pages in a real browser (Debian's chromium through Playwright): each page loads, the
filter narrows the table, the usage page draws its chart, a client sees only its own data,
and no request leaves loopback. Screenshots are kept in tests/artifacts/pages/."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from playwright.sync_api import Page, Route, sync_playwright

from bridge.auth import ADMIN, add_client
from bridge.billing import load_rates
from bridge.datasets import service
from bridge.datasets.manifest import FileEntry
from tests.bridge.gitlab_fake import TOKEN, GitLabFake
from tests.bridge.helpers import hook_headers
from tests.bridge.payloads import CPU_RUNNER, job_event
from tests.bridge.test_provenance import REPORT, jwks, keys, mint  # noqa: F401
from tests.fixtures.bridge import BridgeProcess, start_bridge

SCREENSHOTS = Path(__file__).parents[1] / "artifacts" / "pages"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
PERIOD = "2026-10"


@pytest.fixture
def site(
    datasets_env: dict[str, str],
    gitlab: GitLabFake,
    db_url: str,
    tmp_path: Path,
    jwks: Any,  # noqa: F811
    keys: Any,  # noqa: F811
) -> Iterator[dict[str, Any]]:
    gitlab.add_project("lab/qc")
    env = {
        **datasets_env,
        "BRIDGE_GITLAB_URL": gitlab.url,
        "BRIDGE_GITLAB_TOKEN": TOKEN,
        "BRIDGE_JWKS_URL": jwks.url,
    }
    rates = load_rates(env["BRIDGE_RATES_FILE"])
    ids = []
    with psycopg.connect(db_url, autocommit=True) as conn:
        tokens = {client: add_client(conn, client) for client in ("lab", "other")}
        for number, (group, metadata) in enumerate(
            [
                ("lab", {"operator": "charlie", "experiment": "ARB-diff", "temp": 4}),
                ("lab/imaging", {"operator": "dana", "experiment": "ARB-ctrl", "temp": 20}),
                ("other", {"operator": "eve", "experiment": "secret"}),
            ]
        ):
            digest = hashlib.sha256(f"bytes {number}".encode()).hexdigest()
            files = [FileEntry(f"raw/f{number}.csv", 100 + number, digest)]
            ids.append(
                service.register(conn, rates, ADMIN, files, group, metadata, "ada").dataset["id"]
            )
    server = start_bridge(env, tmp_path / "bridge.log")
    try:
        lab = {"Authorization": f"Bearer {tokens['lab']}"}
        submitted = httpx.post(
            f"{server.url}/api/v1/analyses", headers=lab,
            json={"dataset": ids[0], "analysis": "lab/qc@main"},
        ).json()  # fmt: skip
        _drive(server, submitted["pipeline_id"])
        token = mint(
            keys["current"], iss=gitlab.url, job_id="1", project_path="lab/qc",
            pipeline_id=str(submitted["pipeline_id"]),
        )  # fmt: skip
        report = {**REPORT, "job_id": 1, "pipeline_id": submitted["pipeline_id"],
                  "project_path": "lab/qc"}  # fmt: skip
        posted = httpx.post(
            f"{server.url}/api/v1/runs", json=report, headers={"Authorization": f"Bearer {token}"}
        )
        assert posted.status_code == 201, posted.text
        yield {"server": server, "tokens": tokens, "ids": ids, "analysis": submitted["id"]}
    finally:
        server.stop()


def _drive(server: BridgeProcess, pipeline_id: int) -> None:
    """Two finished jobs in PERIOD (for usage) and one running job of the analysis."""
    start = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
    common = {"project": "lab/qc", "project_id": 101, "pipeline_id": pipeline_id}
    events = [
        job_event(1, "success", runner=CPU_RUNNER, started=start,
                  finished=start + timedelta(minutes=30), duration=1800.0, **common),
        job_event(2, "running", runner=CPU_RUNNER, started=start + timedelta(minutes=31),
                  **common),
    ]  # fmt: skip
    for event in events:
        response = httpx.post(f"{server.url}/hooks/gitlab", json=event, headers=hook_headers(event))
        assert response.status_code == 200, response.text


@pytest.fixture
def browser_page() -> Iterator[tuple[Page, list[str]]]:
    requested: list[str] = []

    def guard(route: Route) -> None:
        url = route.request.url
        requested.append(url)
        if urlsplit(url).hostname not in LOOPBACK:
            route.abort()
        else:
            route.continue_()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.route("**/*", guard)
        page = context.new_page()
        yield page, requested
        context.close()
        browser.close()


def _login(page: Page, url: str, token: str) -> None:
    page.goto(f"{url}/ui/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/ui/datasets")


def _shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_each_page_loads_filters_and_charts_without_leaving_loopback(
    site: dict[str, Any], browser_page: tuple[Page, list[str]]
) -> None:
    page, requested = browser_page
    url, ids = site["server"].url, site["ids"]

    page.goto(f"{url}/ui/datasets")
    assert page.url == f"{url}/ui/login", "no session: the login form"
    _login(page, url, site["tokens"]["lab"])
    assert page.locator("#datasets tr.dataset").count() == 2, "the other client's is hidden"
    _shot(page, "datasets")

    page.fill("#where", "operator=dana\ntemp>10")
    page.click("#filter button[type=submit]")
    page.wait_for_load_state()
    rows = page.locator("#datasets tr.dataset")
    assert rows.count() == 1
    assert ids[1][:12] in rows.first.inner_text()
    _shot(page, "datasets-filtered")

    page.goto(f"{url}/ui/datasets/{ids[0]}")
    assert "raw/f0.csv" in page.locator("#files").inner_text()
    assert "lab/qc@main" in page.locator("#analyses").inner_text()
    _shot(page, "dataset")

    page.goto(f"{url}/ui/analyses/{site['analysis']}")
    assert page.locator("#status").inner_text() == "running"
    assert page.locator("meta[http-equiv=refresh]").count() == 1, "polls while running"
    _shot(page, "analysis")

    page.goto(f"{url}/ui/analyses")
    assert page.locator("#analyses").inner_text().count("lab/qc@main") == 1
    _shot(page, "analyses")

    page.goto(f"{url}/ui/runs")
    chain = page.locator("#runs tr", has_text="success").inner_text()
    assert "lab/qc" in chain
    assert "train@1.2.0" in chain
    assert REPORT["mlflow_run_id"][:12] in chain
    assert REPORT["image"].rpartition("@")[2][:19] in chain
    _shot(page, "runs")

    page.goto(f"{url}/ui/usage?period={PERIOD}")
    bars = page.locator("svg.chart rect.bar")
    assert bars.count() == 6
    heights = [float(bars.nth(i).get_attribute("height") or 0) for i in range(6)]
    assert heights[-1] > 0, "October's 30 minutes are drawn"
    assert heights[:-1] == [0.0] * 5
    assert "0.60" in page.locator("#lines").inner_text()  # 30 min at 0.02 per minute
    _shot(page, "usage")
    with page.expect_download() as download:
        page.click("#csv")
    assert download.value.suggested_filename == f"usage-lab-{PERIOD}.csv"

    assert requested, "the guard saw the requests"
    assert {urlsplit(u).hostname for u in requested} == {"127.0.0.1"}


def test_another_client_sees_none_of_it(
    site: dict[str, Any], browser_page: tuple[Page, list[str]]
) -> None:
    page, _requested = browser_page
    url = site["server"].url
    _login(page, url, site["tokens"]["other"])

    assert page.locator("#datasets tr.dataset").count() == 1
    assert "secret" in page.locator("#datasets").inner_text()
    _shot(page, "other-client-datasets")
    page.goto(f"{url}/ui/analyses")
    assert "lab/qc" not in page.locator("#analyses").inner_text()
    response = page.goto(f"{url}/ui/datasets/{site['ids'][0]}")
    assert response is not None
    assert response.status == 404
    response = page.goto(f"{url}/ui/analyses/{site['analysis']}")
    assert response is not None
    assert response.status == 404
