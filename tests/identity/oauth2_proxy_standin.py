"""A minimal stand-in for oauth2-proxy (`--provider=gitlab --reverse-proxy --set-xauthrequest
--gitlab-group=...`), for testing nginx's `auth_request` wiring on loopback.

oauth2-proxy cannot be installed here (no Debian, PyPI or npm package). What nginx relies on is
its contract, as documented (oauth2-proxy.github.io, "Endpoints" and "Integration"):
- `GET /oauth2/auth`: 202 with `X-Auth-Request-User`, `-Email`, `-Groups` for a valid session
  cookie, 401 without one, 403 when `allowed_groups=a,b` is given and the user is in none;
- `GET /oauth2/start?rd=URL`: redirect to the provider's authorize endpoint;
- `GET /oauth2/callback`: code exchange, userinfo, the `--gitlab-group` gate (403 outside it),
  session cookie, redirect to `rd`;
- `GET /oauth2/sign_out`: clears the cookie.
The provider here is the GitLab stand-in (local/identity), a real OpenID provider, so the login
that nginx sends the browser through is a real authorization-code flow.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

COOKIE = "_oauth2_proxy"


@dataclass
class OAuth2ProxyStandin:
    issuer: str
    client_id: str
    client_secret: str
    redirect_url: str  # https://<vhost>/oauth2/callback, as registered with GitLab
    gitlab_groups: list[str]
    cookie_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    auth_calls: list[dict[str, str]] = field(default_factory=list)

    def start(self) -> int:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self._server.server_address[1]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---- signed session cookie ----------------------------------------------------------

    def _seal(self, session: dict[str, object]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(session).encode()).decode()
        mac = hmac.new(self.cookie_secret, body.encode(), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    def _open(self, value: str) -> dict[str, object] | None:
        body, _, mac = value.partition(".")
        wanted = hmac.new(self.cookie_secret, body.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, wanted):
            return None
        session = json.loads(base64.urlsafe_b64decode(body))
        return session if session.get("expires", 0) > time.time() else None

    # ---- HTTP -----------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                route = {
                    "/oauth2/auth": proxy._auth,
                    "/oauth2/start": proxy._start,
                    "/oauth2/callback": proxy._callback,
                    "/oauth2/sign_out": proxy._sign_out,
                    "/ping": lambda *_: (200, {}, b"OK"),
                }.get(url.path)
                if route is None:
                    status, headers, body = 404, {}, b"not found"
                else:
                    status, headers, body = route(self, query)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def _session(self, request: BaseHTTPRequestHandler) -> dict[str, object] | None:
        for part in (request.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE:
                return self._open(value)
        return None

    def _auth(self, request: BaseHTTPRequestHandler, query: dict[str, str]):
        self.auth_calls.append({k.lower(): v for k, v in request.headers.items()})
        session = self._session(request)
        if session is None:
            return 401, {}, b"Unauthorized"
        groups = list(session["groups"])  # type: ignore[arg-type]
        wanted = [g for g in query.get("allowed_groups", "").split(",") if g]
        if wanted and not set(wanted) & set(groups):
            return 403, {}, b"Forbidden"
        return (
            202,
            {
                "X-Auth-Request-User": str(session["user"]),
                "X-Auth-Request-Email": str(session["email"]),
                "X-Auth-Request-Groups": ",".join(groups),
            },
            b"",
        )

    def _start(self, request: BaseHTTPRequestHandler, query: dict[str, str]):
        state = f"{secrets.token_urlsafe(16)}:{query.get('rd', '/')}"
        authorize = f"{self.issuer}/oauth/authorize?" + urlencode(
            {
                "client_id": self.client_id,
                "redirect_uri": self.redirect_url,
                "response_type": "code",
                "scope": "openid email profile",
                "state": state,
            }
        )
        csrf = f"_oauth2_proxy_csrf={state.split(':', 1)[0]}; Path=/; HttpOnly; Secure"
        return 302, {"Location": authorize, "Set-Cookie": csrf}, b""

    def _callback(self, request: BaseHTTPRequestHandler, query: dict[str, str]):
        nonce, _, redirect = query.get("state", "").partition(":")
        if not nonce or f"_oauth2_proxy_csrf={nonce}" not in (request.headers.get("Cookie") or ""):
            return 403, {}, b"CSRF check failed"
        tokens = httpx.post(
            f"{self.issuer}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": query.get("code", ""),
                "redirect_uri": self.redirect_url,
            },
            auth=(self.client_id, self.client_secret),
            timeout=10,
        )
        if tokens.status_code != 200:
            return 500, {}, b"code exchange failed"
        info = httpx.get(
            f"{self.issuer}/oauth/userinfo",
            headers={"Authorization": f"Bearer {tokens.json()['access_token']}"},
            timeout=10,
        ).json()
        groups = info.get("groups", [])
        if not set(self.gitlab_groups) & set(groups):
            return 403, {}, b"Permission Denied: not in an allowed GitLab group"
        session = {
            "user": info["nickname"],
            "email": info["email"],
            "groups": groups,
            "expires": time.time() + 3600,
        }
        cookie = f"{COOKIE}={self._seal(session)}; Path=/; HttpOnly; Secure; SameSite=Lax"
        return (
            302,
            {"Location": redirect if redirect.startswith("/") else "/", "Set-Cookie": cookie},
            b"",
        )

    def _sign_out(self, request: BaseHTTPRequestHandler, query: dict[str, str]):
        return 302, {"Location": "/", "Set-Cookie": f"{COOKIE}=; Path=/; Max-Age=0"}, b""
