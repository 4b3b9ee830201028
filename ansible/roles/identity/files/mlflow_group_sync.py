#!/usr/bin/env python3
"""Give every GitLab group its one MLflow grant: experiments named `<group path>/...` -> EDIT.

MLflow (mlflow-oidc-auth) denies everything by default and only lets a user create an
experiment whose name she may edit. This sync makes the platform's convention true: for each
GitLab group it creates the group in MLflow (so it can be granted before anyone logs in) and a
group pattern grant `^<group path>/.*` with the permission below. It only adds: grants an
admin changed or added by hand are left alone. Run it after the deploy and on a timer (role
identity); it is idempotent.

Standard library only, so it runs in any image with Python 3. Configuration (environment):
  GITLAB_URL                  GitLab's URL, e.g. https://gitlab.example.org
  GITLAB_TOKEN_FILE           file holding a GitLab token with read_api that sees every group
  MLFLOW_URL                  MLflow's URL
  MLFLOW_ADMIN_USER           an MLflow admin (member of the admin group) or admin service account
  MLFLOW_ADMIN_TOKEN_FILE     file holding that user's MLflow access token
  MLFLOW_GROUP_PERMISSION     READ, USE, EDIT (default) or MANAGE
  MLFLOW_GROUP_PRIORITY       priority of the grant (default 100; lower wins)
Exit status: 0 done, 1 configuration or remote error (one line on stderr).
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

API = "/api/2.0/mlflow/permissions/groups"
# GitLab group paths: letters, digits, '_', '-', '.' and '/' between levels.
GROUP_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*(/[A-Za-z0-9_][A-Za-z0-9_.\-]*)*$")
PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE")


class SyncError(RuntimeError):
    """Something the operator must fix; the message says what."""


def group_pattern(path: str) -> str:
    """The regex of a group's experiments; '.' is the only regex character a path may hold."""
    return "^" + path.replace(".", r"\.") + "/.*"


def _setting(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise SyncError(f"{name} is not set (see the header of {Path(__file__).name})")
    return value


def _secret(name: str) -> str:
    path = Path(_setting(name))
    try:
        value = path.read_text().strip()
    except OSError as error:
        raise SyncError(f"{name}: cannot read {path}: {error.strerror}") from error
    if not value:
        raise SyncError(f"{name}: {path} is empty")
    return value


def _request(
    url: str, headers: dict[str, str], body: dict | None = None, method: str | None = None
) -> tuple[int, dict[str, str], object]:
    data = None if body is None else json.dumps(body).encode()
    method = method or ("POST" if body is not None else "GET")
    request = urllib.request.Request(  # noqa: S310 - URLs come from the operator's settings
        url,
        data=data,
        method=method,
        headers={"Accept": "application/json", "Content-Type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            text = answer.read()
            return answer.status, dict(answer.headers), json.loads(text) if text else None
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")[:300]
        raise SyncError(f"{method} {url}: HTTP {error.code} {detail}") from error
    except urllib.error.URLError as error:
        raise SyncError(f"{url} is unreachable: {error.reason}") from error


def gitlab_groups(gitlab_url: str, token: str) -> list[str]:
    """Full paths of every group the token sees (GitLab's offset pages, x-next-page)."""
    paths: list[str] = []
    page = "1"
    while page:
        query = urllib.parse.urlencode({"all_available": "true", "per_page": 100, "page": page})
        _, headers, groups = _request(
            f"{gitlab_url}/api/v4/groups?{query}", {"PRIVATE-TOKEN": token}
        )
        paths.extend(group["full_path"] for group in groups)  # type: ignore[union-attr]
        page = {k.lower(): v for k, v in headers.items()}.get("x-next-page", "")
    return sorted(set(paths))


def sync(
    gitlab_url: str,
    gitlab_token: str,
    mlflow_url: str,
    mlflow_user: str,
    mlflow_token: str,
    permission: str = "EDIT",
    priority: int = 100,
) -> dict[str, list[str]]:
    """Create the missing groups and grants; returns what was created and what was skipped."""
    if permission not in PERMISSIONS:
        raise SyncError(f"MLFLOW_GROUP_PERMISSION must be one of {', '.join(PERMISSIONS)}")
    pair = base64.b64encode(f"{mlflow_user}:{mlflow_token}".encode()).decode()
    auth = {"Authorization": f"Basic {pair}"}
    created: list[str] = []
    skipped: list[str] = []
    for path in gitlab_groups(gitlab_url.rstrip("/"), gitlab_token):
        if not GROUP_PATH.match(path):
            skipped.append(path)
            continue
        base = f"{mlflow_url.rstrip('/')}{API}"
        _request(base, auth, {"group_name": path})
        patterns_url = f"{base}/{urllib.parse.quote(path, safe='')}/experiment-patterns"
        _, _, existing = _request(patterns_url, auth)
        wanted = group_pattern(path)
        items = existing if isinstance(existing, list) else (existing or {}).get("patterns", [])
        if any(item.get("regex") == wanted for item in items):  # type: ignore[union-attr]
            continue
        _request(
            patterns_url, auth, {"regex": wanted, "priority": priority, "permission": permission}
        )
        created.append(path)
    return {"created": created, "skipped": skipped}


def main() -> int:
    try:
        result = sync(
            _setting("GITLAB_URL"),
            _secret("GITLAB_TOKEN_FILE"),
            _setting("MLFLOW_URL"),
            _setting("MLFLOW_ADMIN_USER"),
            _secret("MLFLOW_ADMIN_TOKEN_FILE"),
            os.environ.get("MLFLOW_GROUP_PERMISSION", "EDIT"),
            int(os.environ.get("MLFLOW_GROUP_PRIORITY", "100")),
        )
    except SyncError as error:
        print(f"mlflow-group-sync: {error}", file=sys.stderr)
        return 1
    for path in result["created"]:
        print(f"granted {group_pattern(path)} to group {path}")
    for path in result["skipped"]:
        print(f"skipped {path!r}: not a GitLab group path", file=sys.stderr)
    print(f"mlflow-group-sync: {len(result['created'])} new grant(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
