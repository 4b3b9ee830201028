"""GitLab stand-in of the converge test: the bridge's GitLab API contract fake plus the
endpoints the deploy's bootstrap calls (gitlab-contracts.md), on port 80 of its container.

Added to tests/bridge/gitlab_fake.py: readiness, personal access tokens (installed by the
`gitlab-rails` shim beside this file, as `gitlab-rails runner` does), application settings,
groups, project creation, the repository files/commits/tags of the templates project, the
CI/CD catalog GraphQL query and mutation, system hooks, instance CI/CD variables, runner
creation (`POST /user/runners`, glrt- tokens) and `POST /runners/verify`, and GitLab's
signing key: the OpenID discovery document (issuer and `jwks_uri` only: the stand-in has no
login) and the JWKS (`/oauth/discovery/keys`) serve an RSA key generated at start.
Test-only, not in GitLab: `POST /-/ci-token` (a personal access token with `api` scope, i.e.
root's) mints a CI job ID token signed with that key, with the claims GitLab gives a job
(gitlab-contracts.md section 2.2), for the converge test's MLflow check.
State lives in memory: a recreated container starts as a fresh GitLab would without its volume
(and with a new signing key; relying parties refetch the JWKS on an unknown signature).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa

from local.issuer import gitlab_claims, public_jwk, sign_id_token
from tests.bridge import gitlab_fake
from tests.bridge.gitlab_fake import GitLabFake, _Error

SETTINGS_DEFAULTS = {
    "signup_enabled": True,
    "allow_local_requests_from_web_hooks_and_services": False,
    "allow_local_requests_from_system_hooks": True,
    "allow_runner_registration_token": True,
    "auto_devops_enabled": True,
    "default_project_visibility": "private",
    "default_group_visibility": "private",
    "version_check_enabled": True,
    "usage_ping_enabled": True,
}
# As GitLab's JwksController sends it (gitlab-contracts.md section 2.2).
JWKS_CACHE_CONTROL = "max-age=86400, public, must-revalidate"
UNAUTHENTICATED = (
    "/-/readiness",
    "/-/liveness",
    "/api/v4/runners/verify",
    "/oauth/discovery/keys",
    "/.well-known/openid-configuration",
    "/-/fake/",
)
# GitLab's default lifetime of a job's ID token when the job sets no timeout (5 minutes).
CI_TOKEN_SECONDS = 300


def external_url(environment: dict[str, str], root: Path = Path("/")) -> str:
    """GitLab's `external_url`, read as omnibus reads it: GITLAB_OMNIBUS_CONFIG, which the
    Compose service sets to `from_file('/omnibus_config.rb')`, or the setting itself."""
    config = environment.get("GITLAB_OMNIBUS_CONFIG", "")
    if source := re.fullmatch(r"\s*from_file\('([^']+)'\)\s*", config):
        config = (root / source[1].lstrip("/")).read_text()
    found = re.search(r"^\s*external_url\s+'([^']+)'", config, re.MULTILINE)
    if found is None:
        raise SystemExit("GitLab stand-in: no external_url in GITLAB_OMNIBUS_CONFIG")
    return found[1].rstrip("/")


def ci_token_claims(request: dict[str, Any]) -> dict[str, Any]:
    """A job's ID token claims (gitlab-contracts.md section 2.2) for a pipeline the user
    `request["user"]` (username, email, id) started in `request["project_path"]`."""
    user = request["user"]
    claims = gitlab_claims(
        job_id=1,
        project_path=request["project_path"],
        pipeline_id=1,
        sha="0" * 40,
        ref=request.get("ref", "main"),
        user_login=user["username"],
    )
    return {**claims, "user_id": str(user["id"]), "user_email": user["email"]}


class DeployGitLab(GitLabFake):
    def __init__(self, url: str, issuer: str) -> None:
        super().__init__()
        self.url = url
        self.issuer = issuer
        # GitLab's token signing key, named in the JWKS by its RFC 7638 thumbprint.
        self.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.tokens: dict[str, dict[str, Any]] = {}
        self.settings = dict(SETTINGS_DEFAULTS)
        self.groups: dict[str, dict[str, Any]] = {}
        self.files: dict[int, dict[str, str]] = {}
        self.tags: dict[int, dict[str, dict[str, Any]]] = {}
        self.catalog: set[str] = set()
        self.system_hooks: list[dict[str, Any]] = []
        self.variables: dict[str, dict[str, Any]] = {}
        self.runner_tokens: dict[str, int] = {}

    def serve(self, port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 (see below)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_PUT(self) -> None:
                fake._handle(self, "PUT")

            def do_DELETE(self) -> None:
                fake._handle(self, "DELETE")

            def log_message(self, format: str, *args: Any) -> None:
                sys.stderr.write(
                    f"{self.command} {self.path.split('?')[0]} {args[1] if len(args) > 1 else ''}\n"
                )

        # Inside its container on the Compose network: nginx and the deploy reach it there.
        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        server.serve_forever()

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(request.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        token = request.headers.get("PRIVATE-TOKEN") or (
            request.headers.get("Authorization") or ""
        ).removeprefix("Bearer ")
        if not parts.path.startswith(UNAUTHENTICATED) and token not in self.tokens:
            self._send(request, 401, {"message": "401 Unauthorized"})
            return
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {key: values[-1] for key, values in parse_qs(raw.decode()).items()}
        try:
            with self._lock:
                status, document, headers = self._deploy_route(
                    method, parts.path, query, body, token
                )
        except _Error as error:
            status, document, headers = error.status, error.document, {}
        self._send(request, status, document, headers)

    def _deploy_route(
        self, method: str, path: str, query: dict[str, list[str]], body: dict[str, Any], token: str
    ) -> tuple[int, Any, dict[str, str]]:
        route = path.removeprefix("/api/v4")
        if path == "/-/readiness" or path == "/-/liveness":
            return 200, {"status": "ok", "master_check": [{"status": "ok"}]}, {}
        if path == "/oauth/discovery/keys":
            keys = [public_jwk(self.signing_key)]
            return 200, {"keys": keys}, {"Cache-Control": JWKS_CACHE_CONTROL}
        if path == "/.well-known/openid-configuration":
            return (
                200,
                {
                    "issuer": self.issuer,
                    "jwks_uri": f"{self.issuer}/oauth/discovery/keys",
                    "id_token_signing_alg_values_supported": ["RS256"],
                },
                {},
            )
        if path == "/-/ci-token" and method == "POST":
            if "api" not in self.tokens[token]["scopes"]:
                raise _Error(403, {"message": "403 Forbidden"})
            try:
                claims = ci_token_claims(body)
                audience = body["aud"]
            except (KeyError, TypeError, AttributeError) as error:
                raise _Error(400, {"message": f"missing {error}"}) from error
            token = sign_id_token(
                self.signing_key,
                claims,
                issuer=self.issuer,
                audience=audience,
                ttl=CI_TOKEN_SECONDS,
            )
            return 201, {"token": token}, {}
        if path == "/-/fake/tokens" and method == "POST":
            self.tokens[body["token"]] = {"name": body["name"], "scopes": body["scopes"]}
            return 201, {"installed": body["name"]}, {}
        if path == "/api/graphql":
            return self._graphql(body)
        if route == "/personal_access_tokens/self":
            entry = self.tokens[token]
            return (
                200,
                {
                    "id": 1,
                    "name": entry["name"],
                    "scopes": entry["scopes"],
                    "active": True,
                    "revoked": False,
                },
                {},
            )
        if route == "/application/settings":
            if method == "PUT":
                self.settings.update({k: v for k, v in body.items() if k in self.settings})
            return 200, dict(self.settings), {}
        if match := re.fullmatch(r"/groups/([^/]+)", route):
            group = self.groups.get(unquote(match[1]))
            if group is None:
                raise _Error(404, {"message": "404 Group Not Found"})
            return 200, group, {}
        if route == "/groups" and method == "POST":
            group = {
                "id": 500 + len(self.groups),
                "name": body["name"],
                "path": body["path"],
                "full_path": body["path"],
            }
            self.groups[body["path"]] = group
            return 201, group, {}
        if route == "/projects" and method == "POST":
            namespace = next(
                g for g in self.groups.values() if g["id"] == int(body["namespace_id"])
            )
            project = self.add_project(f"{namespace['full_path']}/{body['path']}")
            return 201, project.entity(self.url, simple=False), {}
        if match := re.fullmatch(r"/projects/([^/]+)", route):
            return 200, self._find_project(match[1]).entity(self.url, simple=False), {}
        if match := re.fullmatch(
            r"/projects/(\d+)/repository/(tree|commits|tags)(?:/(.+))?", route
        ):
            return self._repository(
                self._find_project(match[1]).id, match[2], match[3], method, body
            )
        if route == "/hooks":
            if method == "POST":
                hook = {"id": 1 + len(self.system_hooks), "url": body["url"]}
                self.system_hooks.append(hook)
                return 201, hook, {}
            return 200, self.system_hooks, {}
        if route.startswith("/admin/ci/variables"):
            return self._variables(method, route, body)
        if route == "/user/runners" and method == "POST":
            # The contract fake's runner (GET/PUT /runners/:id read it), plus its token for
            # POST /runners/verify.
            created = self._create_runner(body)
            self.runner_tokens[created["token"]] = created["id"]
            return 201, created, {}
        if route == "/runners/verify" and method == "POST":
            if body.get("token") not in self.runner_tokens:
                raise _Error(403, {"message": "403 Forbidden"})
            return (
                200,
                {
                    "id": self.runner_tokens[body["token"]],
                    "token": body["token"],
                    "token_expires_at": None,
                },
                {},
            )
        return self._route(method, path, query, body)

    def _find_project(self, key: str) -> gitlab_fake.Project:
        wanted = unquote(key)
        for project in self.projects.values():
            if str(project.id) == wanted or project.path == wanted:
                return project
        raise _Error(404, {"message": "404 Project Not Found"})

    def _repository(
        self, project_id: int, kind: str, name: str | None, method: str, body: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        files = self.files.setdefault(project_id, {})
        tags = self.tags.setdefault(project_id, {})
        if kind == "tree":
            if not files:
                raise _Error(404, {"message": "404 Tree Not Found"})
            return (
                200,
                [{"path": p, "type": "blob", "name": p.rsplit("/", 1)[-1]} for p in sorted(files)],
                {"x-next-page": ""},
            )
        if kind == "commits" and method == "POST":
            for action in body["actions"]:
                if action["action"] == "delete":
                    files.pop(action["file_path"], None)
                else:
                    files[action["file_path"]] = action["content"]
            return 201, {"id": secrets.token_hex(20), "message": body["commit_message"]}, {}
        if kind == "tags" and method == "POST":
            tags[body["tag_name"]] = {"name": body["tag_name"], "message": body.get("message")}
            return 201, tags[body["tag_name"]], {}
        if kind == "tags" and name is not None:
            if unquote(name) not in tags:
                raise _Error(404, {"message": "404 Tag Not Found"})
            return 200, tags[unquote(name)], {}
        raise _Error(404, {"error": "404 Not Found"})

    def _variables(
        self, method: str, route: str, body: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        key = route.removeprefix("/admin/ci/variables").strip("/")
        if method == "GET" and not key:
            return 200, list(self.variables.values()), {}
        if method == "POST":
            if body["key"] in self.variables:
                raise _Error(
                    400, {"message": {"key": ["(" + body["key"] + ") has already been taken"]}}
                )
            self.variables[body["key"]] = _variable(body)
            return 201, self.variables[body["key"]], {}
        if method == "PUT" and key in self.variables:
            self.variables[key] = _variable({**self.variables[key], **body})
            return 200, self.variables[key], {}
        raise _Error(404, {"message": "404 Variable Not Found"})

    def _graphql(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        query = body.get("query", "")
        path = re.search(r'(?:fullPath|projectPath):\s*"([^"]+)"', query)
        if path is None:
            return 200, {"errors": [{"message": "unsupported query"}]}, {}
        if query.lstrip().startswith("mutation"):
            self.catalog.add(path[1])
            return 200, {"data": {"catalogResourcesCreate": {"errors": []}}}, {}
        return 200, {"data": {"project": {"isCatalogResource": path[1] in self.catalog}}}, {}


def _variable(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": body["key"],
        "value": body["value"],
        "variable_type": body.get("variable_type", "env_var"),
        "protected": bool(body.get("protected", False)),
        "masked": bool(body.get("masked", False)),
        "raw": bool(body.get("raw", False)),
        "description": body.get("description"),
    }


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "http://localhost"
    DeployGitLab(url, external_url(dict(os.environ))).serve(80)


if __name__ == "__main__":
    main()
