"""GitLab's REST API through python-gitlab: the few calls reconciliation and hook sync make.

GitLab may be down, restarting (minutes, gitlab-contracts.md 8.4), slow or rate limiting.
Every call is therefore retried a bounded number of times with exponential backoff on
connection errors, timeouts, 429 and 5xx, and then fails with `GitLabUnavailable`, whose
message says what was asked, how often and why it failed. Answers that retrying cannot
change (401, 403, ...) fail at once with `GitLabError`. python-gitlab's own retrying is
switched off so that this is the only policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import gitlab
import requests

log = logging.getLogger("bridge.gitlab")

T = TypeVar("T")
PER_PAGE = 100  # GitLab's maximum
_TRANSIENT = {429, 500, 502, 503, 504}
_MAX_DELAY = 30.0
# A request that may have reached GitLab before it failed: retrying is only safe when the
# call is idempotent.
_MAYBE_SENT = (requests.exceptions.ReadTimeout, requests.exceptions.ChunkedEncodingError)


class GitLabError(RuntimeError):
    """GitLab answered, but not with what the bridge needs; the message says what to fix."""


class GitLabUnavailable(GitLabError):
    """GitLab did not answer usefully within the bounded retries."""


class GitLabApi:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self._sleep = sleep
        self._gl = gitlab.Gitlab(
            self.url,
            private_token=token,
            timeout=timeout,
            retry_transient_errors=False,
            # Behind a proxy GitLab may name itself differently in its `Link` headers.
            keep_base_url=True,
        )
        self._timeout = timeout
        self._runner_tags: dict[int, list[str] | None] = {}

    # --- projects and jobs ---------------------------------------------------------------

    def projects(self) -> Iterator[dict[str, Any]]:
        """Every project the token sees (all of them for an admin), oldest first."""
        listing = self._call(
            "GET /projects",
            lambda: self._gl.projects.list(
                iterator=True,
                pagination="keyset",
                order_by="id",
                sort="asc",
                per_page=PER_PAGE,
                simple=True,
                obey_rate_limit=False,
            ),
        )
        for project in self._iterate("GET /projects", listing):
            yield project.asdict()

    def jobs_above(self, project_id: int, watermark: int) -> Iterator[dict[str, Any]]:
        """The project's jobs with an id above `watermark`, newest first (keyset pages,
        which GitLab offers for jobs only in id-descending order); stops at the watermark
        without fetching older pages. Plain dicts, exactly as decoded from GitLab's JSON."""
        what = f"GET /projects/{project_id}/jobs"
        listing = self._call(
            what,
            lambda: self._gl.http_list(
                f"/projects/{project_id}/jobs",
                {"pagination": "keyset", "order_by": "id", "sort": "desc", "per_page": PER_PAGE},
                iterator=True,
                obey_rate_limit=False,
            ),
            missing_ok=True,  # the project was deleted since it was listed
        )
        if listing is None:
            return
        for job in self._iterate(what, listing):
            if job["id"] <= watermark:
                return
            yield job

    def job(self, project_id: int, job_id: int) -> dict[str, Any] | None:
        """One job, or None when it no longer exists (erased with its pipeline)."""
        jobs = self._gl.projects.get(project_id, lazy=True).jobs
        found = self._call(
            f"GET /projects/{project_id}/jobs/{job_id}",
            lambda: jobs.get(job_id, obey_rate_limit=False),
            missing_ok=True,
        )
        return None if found is None else found.asdict()

    def runner_tags(self, runner_id: int) -> list[str] | None:
        """The runner's tags (`GET /runners/:id`, admin), or None if it was deleted."""
        if runner_id not in self._runner_tags:
            runner = self._call(
                f"GET /runners/{runner_id}",
                lambda: self._gl.runners.get(runner_id, obey_rate_limit=False),
                missing_ok=True,
            )
            self._runner_tags[runner_id] = None if runner is None else list(runner.tag_list)
        return self._runner_tags[runner_id]

    # --- project hooks -------------------------------------------------------------------

    def hooks(self, project_id: int) -> list[dict[str, Any]]:
        hooks = self._gl.projects.get(project_id, lazy=True).hooks
        found = self._call(
            f"GET /projects/{project_id}/hooks",
            lambda: hooks.list(get_all=True, per_page=PER_PAGE, obey_rate_limit=False),
        )
        return [hook.asdict() for hook in found]

    def create_hook(self, project_id: int, attributes: dict[str, Any]) -> dict[str, Any]:
        hooks = self._gl.projects.get(project_id, lazy=True).hooks
        created = self._call(
            f"POST /projects/{project_id}/hooks",
            lambda: hooks.create(attributes, obey_rate_limit=False),
            idempotent=False,
        )
        return created.asdict()

    def update_hook(self, project_id: int, hook_id: int, attributes: dict[str, Any]) -> None:
        hooks = self._gl.projects.get(project_id, lazy=True).hooks
        self._call(
            f"PUT /projects/{project_id}/hooks/{hook_id}",
            lambda: hooks.update(hook_id, attributes, obey_rate_limit=False),
        )

    def delete_hook(self, project_id: int, hook_id: int) -> None:
        hooks = self._gl.projects.get(project_id, lazy=True).hooks
        self._call(
            f"DELETE /projects/{project_id}/hooks/{hook_id}",
            lambda: hooks.delete(hook_id, obey_rate_limit=False),
            missing_ok=True,  # a retried delete that had already worked
        )

    # --- retries -------------------------------------------------------------------------

    def _iterate(self, what: str, listing: Iterator[T]) -> Iterator[T]:
        """Items of a paginated listing; fetching the next page is retried like any call
        (python-gitlab keeps its position when a page fails, so retrying resumes there)."""
        while True:
            try:
                item = self._call(f"{what} (next page)", lambda: next(listing))
            except StopIteration:
                return
            yield item

    def _call(
        self,
        what: str,
        request: Callable[[], T],
        *,
        idempotent: bool = True,
        missing_ok: bool = False,
    ) -> T:
        started = time.monotonic()
        for attempt in range(self.retries + 1):
            try:
                return request()
            except requests.exceptions.RequestException as exc:
                if isinstance(exc, _MAYBE_SENT) and not idempotent:
                    raise GitLabUnavailable(
                        f"{what} to GitLab at {self.url}: no answer within {self._timeout:g} s "
                        "and not retried (it may have been applied); run the command again"
                    ) from None
                reason = _describe_transport(exc, self._timeout)
            except gitlab.exceptions.GitlabError as exc:
                code = exc.response_code
                if code == 404 and missing_ok:
                    return None  # type: ignore[return-value]
                if code not in _TRANSIENT:
                    raise GitLabError(_refusal(what, code, exc.error_message)) from None
                reason = f"HTTP {code}"
            if attempt == self.retries:
                break
            delay = min(self.backoff * 2**attempt, _MAX_DELAY)
            log.warning(
                "%s failed (%s); retry %d of %d in %.1f s",
                what,
                reason,
                attempt + 1,
                self.retries,
                delay,
            )
            self._sleep(delay)
        raise GitLabUnavailable(
            f"GitLab at {self.url} is unavailable: {what} failed {self.retries + 1} times "
            f"over {time.monotonic() - started:.0f} s (last: {reason})"
        )


def _describe_transport(exc: requests.exceptions.RequestException, timeout: float) -> str:
    if isinstance(exc, requests.exceptions.Timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "cannot connect"
    return type(exc).__name__


def _refusal(what: str, code: int | None, message: Any) -> str:
    if code == 401:
        return f"GitLab rejected BRIDGE_GITLAB_TOKEN (401) on {what}"
    if code == 403:
        return f"GitLab refused {what} (403): the token needs the api scope and admin rights"
    return f"GitLab answered {what} with {code}: {message}"
