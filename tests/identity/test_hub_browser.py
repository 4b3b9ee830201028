"""One real browser login to the hub: Debian's Chromium (Playwright) signs in through the GitLab
stand-in's form, the hub starts the user's dev container, and JupyterLab opens in it.
Screenshots are kept under .artifacts/identity/ (git-ignored); the paths are printed.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.fixtures.dev_hub import HubFactory

ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "identity"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def test_sign_in_through_the_gitlab_form_and_land_in_jupyterlab(start_hub: HubFactory) -> None:
    hub = start_hub()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    user = next(u for u in hub.standin.config["users"] if u["username"] == "alice")
    form, landed = ARTIFACTS / "3-hub-gitlab-login-form.png", ARTIFACTS / "4-hub-jupyterlab.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{hub.url}/hub/oauth_login")
            page.wait_for_selector("#username")
            assert page.url.startswith(hub.standin.url)
            page.fill("#username", "alice")
            page.fill("#password", user["password"])
            page.screenshot(path=str(form))
            page.click("#sign-in")
            # The hub spawns the container, then sends the browser on to JupyterLab in it.
            page.wait_for_url(f"{hub.url}/user/alice/lab**", timeout=180_000)
            page.wait_for_selector(".jp-Launcher", timeout=180_000)
            page.screenshot(path=str(landed))
            assert "JupyterLab" in page.title() or page.locator(".jp-Launcher").count() == 1
        finally:
            browser.close()
    print(f"screenshots: {form} {landed}")
