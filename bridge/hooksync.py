"""Project hooks to the bridge: exactly one per project, with the settings the ledger needs.

GitLab CE has no instance-wide source of job events (gitlab-contracts.md 1.8), so every
project needs its own hook. `bridge hooks sync` gives each project exactly one hook whose
URL is the bridge's (`BRIDGE_PUBLIC_URL` + /hooks/gitlab), with job and pipeline events on,
push events off (GitLab turns them on unless told otherwise), the secret token (and the
signing token when one is configured) and SSL verification on:
- a project without such a hook gets one;
- a hook to the bridge with other settings, without a token, or disabled by GitLab after
  failures, is updated (saving a hook re-enables it);
- further hooks to the bridge are deleted: each would deliver every event once more;
- hooks to any other URL belong to someone else and are never touched.
Running it again changes nothing. GitLab never returns a hook's token, only whether one is
set (`token_present`), so a changed BRIDGE_WEBHOOK_TOKEN needs `--reset-tokens`.

A system hook's `project_create` runs the same for the new project, in the background.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from bridge.gitlab.api import GitLabApi, GitLabError, GitLabUnavailable
from bridge.gitlab.webhooks import ProjectCreated
from bridge.settings import Settings

log = logging.getLogger("bridge.hooksync")

HOOK_PATH = "/hooks/gitlab"
REQUIRED = {
    "job_events": True,
    "pipeline_events": True,
    "push_events": False,
    "enable_ssl_verification": True,
}


class Change(StrEnum):
    CREATED = "created"
    FIXED = "fixed"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class HookTarget:
    url: str
    token: str
    signing_token: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> HookTarget:
        settings.require("public_url", "webhook_token")
        return cls(
            url=str(settings.public_url).rstrip("/") + HOOK_PATH,
            token=str(settings.webhook_token),
            signing_token=settings.webhook_signing_key,
        )

    def attributes(self) -> dict[str, Any]:
        wanted: dict[str, Any] = {"url": self.url, "token": self.token, **REQUIRED}
        if self.signing_token:
            wanted["signing_token"] = self.signing_token
        return wanted

    def is_ours(self, hook: dict[str, Any]) -> bool:
        return _comparable(hook.get("url", "")) == _comparable(self.url)

    def problems(self, hook: dict[str, Any]) -> list[str]:
        """Why a hook to the bridge must be updated (empty: it is right)."""
        wrong = [
            f"{name} is {hook.get(name)}"
            for name, want in REQUIRED.items()
            if hook.get(name) is not want
        ]
        # Older GitLab versions do not say whether a token is set: then trust it is.
        if hook.get("token_present") is False:
            wrong.append("no secret token")
        if self.signing_token and hook.get("signing_token_present") is False:
            wrong.append("no signing token")
        if hook.get("alert_status") not in (None, "executable"):
            wrong.append(f"disabled by GitLab ({hook['alert_status']})")
        return wrong


@dataclass(frozen=True)
class ProjectResult:
    change: Change
    hook_id: int
    removed: int = 0
    problems: tuple[str, ...] = ()

    def describe(self) -> str:
        text = f"hook {self.hook_id} {self.change}"
        if self.problems:
            text += f" ({', '.join(self.problems)})"
        if self.removed:
            text += f", {self.removed} duplicate hook(s) to the bridge deleted"
        return text


def sync_project(
    api: GitLabApi, project_id: int, target: HookTarget, *, reset_token: bool = False
) -> ProjectResult:
    ours = sorted((h for h in api.hooks(project_id) if target.is_ours(h)), key=lambda h: h["id"])
    if not ours:
        created = api.create_hook(project_id, target.attributes())
        return ProjectResult(Change.CREATED, created["id"])
    kept, *duplicates = ours
    for hook in duplicates:
        api.delete_hook(project_id, hook["id"])
    problems = target.problems(kept)
    if reset_token and not problems:
        problems = ["token reset on request"]
    if problems:
        api.update_hook(project_id, kept["id"], target.attributes())
        return ProjectResult(Change.FIXED, kept["id"], len(duplicates), tuple(problems))
    return ProjectResult(Change.UNCHANGED, kept["id"], len(duplicates))


@dataclass
class SyncSummary:
    projects: int = 0
    changes: dict[Change, int] = field(default_factory=lambda: dict.fromkeys(Change, 0))
    removed: int = 0
    failures: list[str] = field(default_factory=list)

    def describe(self) -> str:
        counts = ", ".join(f"{n} {change}" for change, n in self.changes.items())
        text = f"hooks sync: {self.projects} projects: {counts}, {self.removed} duplicates deleted"
        if self.failures:
            text += f"; {len(self.failures)} failed: " + "; ".join(self.failures)
        return text


def sync_all(
    api: GitLabApi,
    target: HookTarget,
    projects: list[dict[str, Any]],
    *,
    reset_tokens: bool = False,
    report: Callable[[dict[str, Any], ProjectResult], None] = lambda _p, _r: None,
) -> SyncSummary:
    """Sync every project; a project GitLab refuses is reported, the others go on."""
    summary = SyncSummary()
    for project in projects:
        path = project["path_with_namespace"]
        try:
            result = sync_project(api, project["id"], target, reset_token=reset_tokens)
        except GitLabUnavailable:
            raise
        except GitLabError as exc:
            summary.failures.append(f"{path}: {exc}")
            continue
        summary.projects += 1
        summary.changes[result.change] += 1
        summary.removed += result.removed
        report(project, result)
    return summary


# --- on a system hook's project_create ------------------------------------------------

_running: set[asyncio.Future[None]] = set()


def provision_later(settings: Settings, created: ProjectCreated) -> None:
    """Give a just-created project its hook in a worker thread, so the system hook delivery
    is answered at once and the job-event path never waits for GitLab's API."""
    if not (settings.gitlab_token and settings.public_url):
        log.warning(
            "project %s created, but BRIDGE_GITLAB_TOKEN or BRIDGE_PUBLIC_URL is not set: "
            "run `bridge hooks sync` to give it its hook",
            created.path_with_namespace,
        )
        return
    task = asyncio.ensure_future(asyncio.to_thread(_provision, settings, created))
    _running.add(task)  # the loop keeps only weak references to tasks
    task.add_done_callback(_running.discard)


def _provision(settings: Settings, created: ProjectCreated) -> None:
    path = created.path_with_namespace
    try:
        api = GitLabApi(settings.instance, str(settings.gitlab_token))
        result = sync_project(api, created.project_id, HookTarget.from_settings(settings))
    except GitLabError as exc:
        log.error(
            "new project %s has no hook to the bridge yet (%s): run `bridge hooks "
            "sync`; the reconciler bills its jobs meanwhile",
            path,
            exc,
        )
        return
    except Exception:
        # A worker thread: nobody else would see this error.
        log.exception("new project %s: hook provisioning failed; run `bridge hooks sync`", path)
        return
    log.info("new project %s: %s", path, result.describe())


def _comparable(url: str) -> tuple[str, str, str, str]:
    parts = urlsplit(url.strip())
    return (parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query)
