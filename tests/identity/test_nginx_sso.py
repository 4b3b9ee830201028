"""The bridge's pages behind GitLab login: real nginx (the rendered configuration, TLS) asking an
oauth2-proxy stand-in (its documented /oauth2/auth contract) about each request, with the GitLab
stand-in as the identity provider. The CI endpoints stay outside the login.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from local.identity.standin import GitLabStandin
from tests.fixtures.identity import StandinFactory, standin_config
from tests.fixtures.nginx import live_nginx
from tests.fixtures.provisioning import make
from tests.fixtures.registry import ImageLock
from tests.identity.oauth2_proxy_standin import OAuth2ProxyStandin

DOMAIN = "ml.example.org"
BRIDGE = f"bridge.{DOMAIN}"
CALLBACK = f"https://{BRIDGE}/oauth2/callback"
CLIENT = {"client_id": "bridge-pages", "client_secret": "bridge-pages-secret"}
IDENTITY_HEADERS = (
    "X-Auth-Request-User",
    "X-Auth-Request-Email",
    "X-Auth-Request-Groups",
    "X-Forwarded-User",
    "X-Forwarded-Email",
    "Remote-User",
)


class Echo(BaseHTTPRequestHandler):
    """Answers with the path and every identity header that reached it."""

    def do_GET(self) -> None:
        seen = {name: self.headers.get(name) for name in (*IDENTITY_HEADERS, "Authorization")}
        body = json.dumps({"path": self.path, "headers": seen}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Browser:
    """Follows redirects across nginx (TLS, SNI on 127.0.0.1) and the GitLab stand-in, keeping
    each site's cookies, as a browser would."""

    https_port: int
    ca: Path
    standin: GitLabStandin
    cookies: dict[str, str] = field(default_factory=dict)
    idp: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def nginx(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        context = ssl.create_default_context(cafile=str(self.ca))
        raw = socket.create_connection(("127.0.0.1", self.https_port), timeout=30)
        with context.wrap_socket(raw, server_hostname=BRIDGE) as tls:
            connection = http.client.HTTPConnection(BRIDGE)
            connection.sock = tls
            cookie = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            sent = {"Host": BRIDGE, **({"Cookie": cookie} if cookie else {}), **(headers or {})}
            connection.request("GET", path, headers=sent)
            response = connection.getresponse()
            for name, value in response.getheaders():
                if name.lower() == "set-cookie":
                    key, _, rest = value.partition("=")
                    self.cookies[key] = rest.split(";", 1)[0]
            answer = response.status, dict(response.getheaders()), response.read()
            connection.close()
            return answer

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """GET `path` on the bridge vhost and follow every redirect to the end."""
        url = f"https://{BRIDGE}{path}"
        for _ in range(20):
            parts = urlsplit(url)
            if parts.hostname == BRIDGE:
                target = parts.path + (f"?{parts.query}" if parts.query else "")
                status, answer_headers, body = self.nginx(target, headers)
                location = answer_headers.get("Location")
            else:
                answer = self.idp.get(url)
                status, body, location = answer.status_code, answer.content, None
                location = answer.headers.get("location")
            if status not in (301, 302, 303, 307) or not location:
                return status, body
            url = str(httpx.URL(url).join(location))
        raise AssertionError("redirect loop")

    def login_as(self, user: str) -> None:
        self.idp.get(f"{self.standin.url}/-/test-login", params={"user": user}).raise_for_status()


@dataclass
class Site:
    https_port: int
    ca: Path
    standin: GitLabStandin
    sso: OAuth2ProxyStandin
    browsers: list[Browser] = field(default_factory=list)

    def browser(self) -> Browser:
        """A fresh browser (no cookies); closed with the site, never left to the collector."""
        browser = Browser(self.https_port, self.ca, self.standin)
        self.browsers.append(browser)
        return browser


@pytest.fixture(scope="module")
def site(
    session_identity_standin: StandinFactory,
    tmp_path_factory: pytest.TempPathFactory,
    image_lock: ImageLock,
) -> Iterator[Site]:
    # Own secrets (CA and certificate) and a render of the nginx role only: quicker than the
    # whole-inventory render the provisioning tests share.
    secrets = tmp_path_factory.mktemp("nginx-sso-secrets") / "secrets"
    made = make("secrets", "INVENTORY=example", f"SECRETS={secrets}")
    assert made.returncode == 0, made.stdout + made.stderr
    standin = session_identity_standin(standin_config([{**CLIENT, "redirect_uris": [CALLBACK]}]))
    sso = OAuth2ProxyStandin(
        issuer=standin.url,
        client_id=CLIENT["client_id"],
        client_secret=CLIENT["client_secret"],
        redirect_url=CALLBACK,
        gitlab_groups=["team-a", "team-b", "platform-admins"],
    )
    sso_port = sso.start()
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    echo = f"127.0.0.1:{upstream.server_address[1]}"

    services = ["gitlab", "registry", "mlflow", "minio", "console", "bridge", "hub"]
    upstreams = {**dict.fromkeys(services, echo), "oauth2_proxy": f"127.0.0.1:{sso_port}"}
    work = tmp_path_factory.mktemp("nginx-sso")
    with live_nginx(work, upstreams, secrets, image_lock) as nginx:
        site = Site(nginx.https_port, secrets / "ca/ca.crt", standin, sso)
        yield site
        for browser in site.browsers:
            browser.idp.close()
    upstream.shutdown()
    upstream.server_close()
    sso.stop()


def test_pages_redirect_to_the_gitlab_login_without_a_session(site: Site) -> None:
    status, headers, _ = site.browser().nginx("/usage?client=a")
    assert status == 302
    location = urlsplit(headers["Location"])
    assert (location.scheme, location.hostname) == ("https", BRIDGE)
    assert f"{location.path}?{location.query}" == "/oauth2/start?rd=/usage?client=a"


def test_a_member_of_an_allowed_group_gets_the_page_as_herself(site: Site) -> None:
    browser = site.browser()
    browser.login_as("alice")
    status, body = browser.get("/usage", headers={"X-Auth-Request-User": "carol"})
    assert status == 200, body
    seen = json.loads(body)
    assert seen["path"] == "/usage"
    assert seen["headers"]["X-Auth-Request-User"] == "alice"
    assert seen["headers"]["X-Auth-Request-Email"] == "alice@example.test"
    assert seen["headers"]["X-Auth-Request-Groups"] == "team-a,team-a/vision"


def test_outside_the_allowed_groups_the_login_is_refused(site: Site) -> None:
    browser = site.browser()
    browser.login_as("mallory")
    status, _ = browser.get("/usage")
    assert status == 403
    # No session was made: the next request is sent to the login again.
    assert browser.nginx("/usage")[0] == 302


def test_admin_pages_are_for_the_admin_group_only(site: Site) -> None:
    alice = site.browser()
    alice.login_as("alice")
    assert alice.get("/usage")[0] == 200
    assert alice.get("/admin/clients")[0] == 403
    carol = site.browser()
    carol.login_as("carol")
    status, body = carol.get("/admin/clients")
    assert status == 200
    assert json.loads(body)["headers"]["X-Auth-Request-User"] == "carol"


def test_internal_login_checks_cannot_be_called_from_outside(site: Site) -> None:
    browser = site.browser()
    assert browser.nginx("/oauth2/auth")[0] == 404
    assert browser.nginx("/oauth2/auth/1")[0] == 404


def test_ci_endpoints_skip_the_login_and_drop_client_identity_headers(site: Site) -> None:
    calls = len(site.sso.auth_calls)
    spoofed = dict.fromkeys(IDENTITY_HEADERS, "carol")
    for path in ["/hooks/gitlab", "/api/v1/runs", "/api/v1/usage-samples", "/healthz"]:
        status, _, body = site.browser().nginx(
            path, headers={"Authorization": "Bearer ci-id-token", **spoofed}
        )
        assert status == 200, path
        seen = json.loads(body)["headers"]
        assert seen["Authorization"] == "Bearer ci-id-token"
        assert all(seen[name] is None for name in IDENTITY_HEADERS), seen
    assert len(site.sso.auth_calls) == calls, "no login check on the CI endpoints"
