"""A real nginx, with the configuration `make render` writes, in front of a local upstream.

The render uses the example inventory and its `make secrets` output; only where nginx listens
and where the upstreams are move to loopback (role variables, nothing edited by hand). Requests
name the virtual hosts through SNI and Host on 127.0.0.1 and verify the server certificate
against the generated CA.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.fixtures.nginx import live_nginx
from tests.fixtures.provisioning import Render
from tests.fixtures.registry import ImageLock

DOMAIN = "ml.example.org"


class Echo(BaseHTTPRequestHandler):
    """Answers every request with what reached it (path, host, forwarded headers, body size)."""

    def _answer(self) -> None:
        size = 0
        remaining = int(self.headers.get("Content-Length", "0"))
        while remaining:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            size += len(chunk)
            remaining -= len(chunk)
        body = json.dumps(
            {
                "path": self.path,
                "host": self.headers.get("Host"),
                "proto": self.headers.get("X-Forwarded-Proto"),
                "authorization": self.headers.get("Authorization"),
                "received": size,
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Proxy:
    http_port: int
    https_port: int
    ca: Path

    def https(
        self,
        host: str,
        path: str = "/",
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        context = ssl.create_default_context(cafile=str(self.ca))
        raw = socket.create_connection(("127.0.0.1", self.https_port), timeout=30)
        with context.wrap_socket(raw, server_hostname=host) as tls:
            connection = http.client.HTTPConnection(host)
            connection.sock = tls
            try:
                connection.request(
                    method, path, body=body, headers={"Host": host, **(headers or {})}
                )
                response = connection.getresponse()
                return response.status, dict(response.getheaders()), response.read()
            finally:
                connection.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def proxy(
    example_render: Render,
    upstream: int,
    tmp_path_factory: pytest.TempPathFactory,
    image_lock: ImageLock,
) -> Iterator[Proxy]:
    upstreams = dict.fromkeys(
        ["gitlab", "registry", "mlflow", "minio", "console", "bridge", "hub", "oauth2_proxy"],
        f"127.0.0.1:{upstream}",
    )
    work = tmp_path_factory.mktemp("nginx-live")
    with live_nginx(work, upstreams, example_render.secrets, image_lock) as nginx:
        yield Proxy(
            http_port=nginx.http_port,
            https_port=nginx.https_port,
            ca=example_render.secrets / "ca/ca.crt",
        )


def test_tls_request_reaches_the_upstream_verified_by_the_generated_ca(proxy: Proxy) -> None:
    status, headers, body = proxy.https(f"gitlab.{DOMAIN}", "/api/v4/version?x=1")
    assert status == 200
    seen = json.loads(body)
    assert seen == {
        "path": "/api/v4/version?x=1",
        "host": f"gitlab.{DOMAIN}",
        "proto": "https",
        "authorization": None,
        "received": 0,
    }
    assert headers["Strict-Transport-Security"].startswith("max-age=63072000")


def test_tls_is_mozilla_intermediate(proxy: Proxy) -> None:
    context = ssl.create_default_context(cafile=str(proxy.ca))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    raw = socket.create_connection(("127.0.0.1", proxy.https_port), timeout=10)
    with context.wrap_socket(raw, server_hostname=f"mlflow.{DOMAIN}") as tls:
        assert tls.version() == "TLSv1.2"
        assert tls.cipher()[0].startswith("ECDHE-")
    context = ssl.create_default_context(cafile=str(proxy.ca))
    raw = socket.create_connection(("127.0.0.1", proxy.https_port), timeout=10)
    with context.wrap_socket(raw, server_hostname=f"mlflow.{DOMAIN}") as tls:
        assert tls.version() == "TLSv1.3"


def test_unknown_host_gets_no_tls_handshake(proxy: Proxy) -> None:
    context = ssl.create_default_context(cafile=str(proxy.ca))
    raw = socket.create_connection(("127.0.0.1", proxy.https_port), timeout=10)
    with pytest.raises(ssl.SSLError), context.wrap_socket(raw, server_hostname="other.example"):
        pass


def test_plain_http_redirects_to_https_without_hsts(proxy: Proxy) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", proxy.http_port, timeout=10)
    try:
        connection.request("GET", "/explore?page=2", headers={"Host": f"gitlab.{DOMAIN}"})
        response = connection.getresponse()
        assert response.status == 301
        assert response.getheader("Location") == f"https://gitlab.{DOMAIN}/explore?page=2"
        assert response.getheader("Strict-Transport-Security") is None
    finally:
        connection.close()
    connection = http.client.HTTPConnection("127.0.0.1", proxy.http_port, timeout=10)
    try:
        connection.request("GET", "/", headers={"Host": "unknown.example"})
        with pytest.raises(http.client.RemoteDisconnected):
            connection.getresponse()
    finally:
        connection.close()


def test_mlflow_logs_in_itself_and_the_bridge_pages_go_through_the_login_check(
    proxy: Proxy,
) -> None:
    # No shared password in front of MLflow any more: mlflow-oidc-auth logs users in itself.
    status, _, body = proxy.https(f"mlflow.{DOMAIN}", "/ajax-api/2.0/mlflow/experiments/search")
    assert status == 200
    assert json.loads(body)["path"].startswith("/ajax-api/")
    # Machine endpoints carry their own tokens and pass straight through (the GitLab login of
    # the pages is tested against an oauth2-proxy stand-in in tests/identity/test_nginx_sso.py).
    for path in ["/hooks/gitlab", "/api/v1/jobs", "/healthz", "/readyz"]:
        status, _, body = proxy.https(
            f"bridge.{DOMAIN}", path, headers={"Authorization": "Bearer client-token"}
        )
        assert status == 200, path
        assert json.loads(body)["authorization"] == "Bearer client-token"


def test_body_limits_per_vhost(proxy: Proxy) -> None:
    big = b"x" * (30 * 1024 * 1024)
    for name in ["minio", "registry", "gitlab", "mlflow"]:
        status, _, body = proxy.https(f"{name}.{DOMAIN}", "/upload", "PUT", {}, big)
        assert status == 200, name
        assert json.loads(body)["received"] == len(big)
    assert proxy.https(f"bridge.{DOMAIN}", "/hooks/gitlab", "POST", body=big)[0] == 413
