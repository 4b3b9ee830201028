"""One real browser login: Debian's Chromium (Playwright) signs in through the GitLab stand-in's
form and lands in MLflow, seeing her group's experiment. Screenshots are kept under
.artifacts/identity/ (git-ignored); the paths are printed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.identity.conftest import API, GroupSync, MlflowSso

ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "identity"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def experiment(mlflow_sso: MlflowSso, group_sync: GroupSync) -> str:
    name = "team-a/browser-login"
    with mlflow_sso.session("alice") as alice:
        created = alice.post(f"{mlflow_sso.url}{API}/experiments/create", json={"name": name})
        assert created.status_code in (200, 400), created.text  # 400: exists from a rerun
    return name


def test_sign_in_through_the_gitlab_form_and_land_in_mlflow(
    mlflow_sso: MlflowSso, experiment: str
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    user = next(u for u in mlflow_sso.standin.config["users"] if u["username"] == "alice")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{mlflow_sso.url}/login")
            page.wait_for_selector("#username")
            assert page.url.startswith(mlflow_sso.standin.url)
            page.fill("#username", "alice")
            page.fill("#password", user["password"])
            form = ARTIFACTS / "1-gitlab-login-form.png"
            page.screenshot(path=str(form))
            page.click("#sign-in")
            page.wait_for_url(f"{mlflow_sso.url}/**")
            page.goto(f"{mlflow_sso.url}/#/experiments")
            page.get_by_text(experiment).first.wait_for(timeout=60_000)
            landed = ARTIFACTS / "2-mlflow-experiments.png"
            page.screenshot(path=str(landed), full_page=True)
            assert "team-b/" not in page.content()
        finally:
            browser.close()
    print(f"screenshots: {form} {landed}")
