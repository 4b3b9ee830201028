"""A contract fake of the GitLab REST API v4 endpoints the bridge calls, on loopback.

A real HTTP server (python-gitlab talks to it over a socket, exactly as to GitLab). Shapes,
defaults, errors and pagination follow GitLab's documentation and source
(gitlab-contracts.md 1.1, 1.8 and 2.1; lib/api/ci/jobs.rb; the pagination helpers):

- `GET /projects`: offset pages (`x-page`, `x-per-page`, `x-next-page`, `x-prev-page`,
  `x-total`, `x-total-pages`, `Link` prev/next/first/last), or keyset pages
  (`pagination=keyset&order_by=id`: a `Link` rel="next" with `id_after` / `id_before`);
- `GET /projects/:id/jobs?scope[]=...`: offset pages without counts (no `x-total`, no
  rel="last"), or cursor keyset pages (`pagination=keyset`, only `order_by=id&sort=desc`,
  anything else is a 405): a `Link` rel="next" with `cursor`;
- `GET /projects/:id/jobs/:job_id`;
- runners (doc/api/users.md "Create a runner linked to a user", doc/api/runners.md): `POST
  /user/runners` (201 with `id`, `token` (glrt-), `token_expires_at`), `GET /runners/:id`,
  `PUT /runners/:id` (description, paused, tag_list, run_untagged, locked, access_level,
  maximum_timeout, maintenance_note; 400 when none is given);
- `GET/POST /projects/:id/hooks` (offset pages), `GET/PUT/DELETE /projects/:id/hooks/:id`;
- `GET/POST /applications`, `DELETE /applications/:id` (instance OAuth applications, admin):
  the secret is in the creation's answer only (doc/api/applications.md).

Tokens are never returned by the hooks API, only `token_present` / `signing_token_present`;
`push_events` and `enable_ssl_verification` default to true, the other events to false.
Every request is logged in `calls`; `fail()` and `delay` inject outages and slowness.

Jobs carry their whole truth, so the same records give the REST entities and the webhook
payloads GitLab would have sent (`webhook_events`).
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from local.ports import free_port
from tests.bridge import payloads

TOKEN = "glpat-fake-admin-token"
TERMINAL = {"success", "failed", "canceled"}
STATUSES = {
    "created",
    "waiting_for_resource",
    "preparing",
    "pending",
    "running",
    "success",
    "failed",
    "canceled",
    "canceling",
    "skipped",
    "manual",
    "scheduled",
}
HOOK_EVENTS = (
    "push_events",
    "issues_events",
    "confidential_issues_events",
    "merge_requests_events",
    "tag_push_events",
    "note_events",
    "confidential_note_events",
    "job_events",
    "pipeline_events",
    "wiki_page_events",
    "deployment_events",
    "feature_flag_events",
    "releases_events",
    "milestone_events",
    "emoji_events",
    "resource_access_token_events",
    "repository_update_events",
)
KEYSET_UNAVAILABLE = {"error": "Keyset pagination is not yet available for this type of request"}
HOOK_DEFAULTS = {
    **dict.fromkeys(HOOK_EVENTS, False),
    "push_events": True,
    "enable_ssl_verification": True,
}


def stamp(moment: datetime | None) -> str | None:
    """GitLab's REST timestamps: `2026-10-01T09:00:00.000Z`."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


RUNNER_SETTINGS = {
    "description",
    "paused",
    "tag_list",
    "run_untagged",
    "locked",
    "access_level",
    "maximum_timeout",
    "maintenance_note",
}


@dataclass
class Runner:
    id: int
    description: str
    runner_type: str
    tags: list[str]
    run_untagged: bool = True
    locked: bool = False
    paused: bool = False
    access_level: str = "not_protected"
    maximum_timeout: int | None = None
    maintenance_note: str | None = None

    @classmethod
    def from_payload(cls, runner: dict[str, Any]) -> Runner:
        return cls(runner["id"], runner["description"], runner["runner_type"], runner["tags"])

    def webhook(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "runner_type": self.runner_type,
            "active": True,
            "is_shared": self.runner_type == "instance_type",
            "tags": self.tags,
        }

    def entity(self) -> dict[str, Any]:
        """`GET /runners/:id` (RunnerDetails)."""
        return {
            "id": self.id,
            "description": self.description,
            "ip_address": None,
            "active": not self.paused,
            "paused": self.paused,
            "is_shared": self.runner_type == "instance_type",
            "runner_type": self.runner_type,
            "name": "gitlab-runner",
            "online": True,
            "status": "online",
            "created_at": "2026-01-05T10:00:00.000Z",
            "created_by": None,
            "tag_list": self.tags,
            "run_untagged": self.run_untagged,
            "locked": self.locked,
            "maximum_timeout": self.maximum_timeout,
            "access_level": self.access_level,
            "version": "19.4.0",
            "revision": "d79f3e7b",
            "platform": "linux",
            "architecture": "amd64",
            "contacted_at": "2026-11-22T10:00:00.000Z",
            "maintenance_note": self.maintenance_note,
            "projects": [],
            "groups": [],
        }


@dataclass
class Job:
    id: int
    project_id: int
    pipeline_id: int
    status: str
    created_at: datetime
    name: str = "train"
    stage: str = "train"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration: float | None = None
    runner: Runner | None = None
    tag_list: list[str] = field(default_factory=list)

    @property
    def sha(self) -> str:
        return f"{self.pipeline_id:040x}"

    def entity(self, project: Project, base: str) -> dict[str, Any]:
        """The REST Job entity (Entities::Ci::Job)."""
        web = f"{base}/{project.path}"
        runner = None
        if self.runner is not None:
            r = self.runner
            runner = {
                "id": r.id,
                "description": r.description,
                "ip_address": None,
                "active": True,
                "paused": False,
                "is_shared": r.runner_type == "instance_type",
                "runner_type": r.runner_type,
                "name": "gitlab-runner",
                "online": True,
                "status": "online",
            }
        entity = {
            "id": self.id,
            "status": self.status,
            "stage": self.stage,
            "name": self.name,
            "ref": "main",
            "tag": False,
            "coverage": None,
            "allow_failure": False,
            "created_at": stamp(self.created_at),
            "started_at": stamp(self.started_at),
            "finished_at": stamp(self.finished_at),
            "erased_at": None,
            "duration": self.duration,
            "queued_duration": 1.5 if self.started_at else None,
            "user": {
                "id": 3,
                "username": "ada",
                "name": "Ada Scientist",
                "state": "active",
                "locked": False,
                "avatar_url": None,
                "web_url": f"{base}/ada",
            },
            "commit": {
                "id": self.sha,
                "short_id": self.sha[:8],
                "created_at": stamp(self.created_at),
                "parent_ids": [],
                "title": "Train",
                "message": "Train\n",
                "author_name": "Ada Scientist",
                "author_email": "ada@example.com",
                "authored_date": stamp(self.created_at),
                "committer_name": "Ada Scientist",
                "committer_email": "ada@example.com",
                "committed_date": stamp(self.created_at),
                "trailers": {},
                "extended_trailers": {},
                "web_url": f"{web}/-/commit/{self.sha}",
            },
            "pipeline": {
                "id": self.pipeline_id,
                "iid": self.pipeline_id % 1000,
                "project_id": self.project_id,
                "sha": self.sha,
                "ref": "main",
                "status": "success",
                "source": "push",
                "created_at": stamp(self.created_at),
                "updated_at": stamp(self.created_at),
                "web_url": f"{web}/-/pipelines/{self.pipeline_id}",
            },
            "web_url": f"{web}/-/jobs/{self.id}",
            "project": {"ci_job_token_scope_enabled": False},
            "artifacts_file": None,
            "artifacts": [],
            "artifacts_expire_at": None,
            "archived": False,
            "tag_list": self.tag_list,
            "runner": runner,
            "runner_manager": None
            if runner is None
            else {
                "id": 7,
                "system_id": "s_0123456789ab",
                "version": "19.4.0",
                "revision": "d79f3e7b",
                "platform": "linux",
                "architecture": "amd64",
                "created_at": "2026-01-05T10:00:00.000Z",
                "contacted_at": "2026-11-22T10:00:00.000Z",
                "ip_address": "10.0.0.5",
                "status": "online",
            },
        }
        if self.status == "failed":
            entity["failure_reason"] = "script_failure"
        return entity

    def webhook_events(self, project: Project) -> list[dict[str, Any]]:
        """The Job Hook bodies GitLab sent for this job, in order."""
        common = {
            "project": project.path,
            "project_id": project.id,
            "pipeline_id": self.pipeline_id,
            "created": self.created_at,
            "name": self.name,
        }
        runner = self.runner.webhook() if self.runner else None
        events = [payloads.job_event(self.id, "created", **common)]
        if self.status in ("created", "manual", "skipped"):
            if self.status != "created":
                events.append(payloads.job_event(self.id, self.status, **common))
            return events
        events.append(payloads.job_event(self.id, "pending", **common))
        if self.started_at is not None:
            events.append(
                payloads.job_event(
                    self.id, "running", runner=runner, started=self.started_at, **common
                )
            )
        if self.status in TERMINAL:
            events.append(
                payloads.job_event(
                    self.id,
                    self.status,
                    runner=runner,
                    started=self.started_at,
                    finished=self.finished_at,
                    duration=self.duration,
                    **common,
                )
            )
        return events

    def pipeline_build(self) -> dict[str, Any]:
        return payloads.pipeline_build(
            self.id,
            self.status,
            runner=self.runner.webhook() if self.runner else None,
            created=self.created_at,
            started=self.started_at,
            finished=self.finished_at,
            duration=self.duration,
            name=self.name,
        )


@dataclass
class Project:
    id: int
    path: str
    jobs: list[Job] = field(default_factory=list)
    hooks: dict[int, dict[str, Any]] = field(default_factory=dict)

    def entity(self, base: str, simple: bool) -> dict[str, Any]:
        group, _, name = self.path.rpartition("/")
        entity = {
            "id": self.id,
            "description": None,
            "name": name,
            "name_with_namespace": f"{group} / {name}",
            "path": name,
            "path_with_namespace": self.path,
            "created_at": "2026-01-10T10:00:00.000Z",
            "default_branch": "main",
            "tag_list": [],
            "topics": [],
            "ssh_url_to_repo": f"git@fake:{self.path}.git",
            "http_url_to_repo": f"{base}/{self.path}.git",
            "web_url": f"{base}/{self.path}",
            "readme_url": None,
            "forks_count": 0,
            "avatar_url": None,
            "star_count": 0,
            "last_activity_at": "2026-11-20T10:00:00.000Z",
            "namespace": {
                "id": 100 + self.id,
                "name": group,
                "path": group,
                "kind": "group",
                "full_path": group,
                "parent_id": None,
                "avatar_url": None,
                "web_url": f"{base}/groups/{group}",
            },
        }
        if not simple:
            entity.update({"visibility": "private", "archived": False, "jobs_enabled": True})
        return entity


@dataclass
class Fault:
    status: int
    remaining: int
    path: re.Pattern[str] | None


class GitLabFake:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.projects: dict[int, Project] = {}
        self.runners: dict[int, Runner] = {}
        self.calls: list[tuple[str, str]] = []
        self.delay = 0.0
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._hook_ids = itertools.count(1001)
        self.applications: dict[int, dict[str, Any]] = {}
        self._application_ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.pipelines: dict[int, dict[str, Any]] = {}  # see "Pipelines" below
        self.refs: dict[int, set[str]] = {}

    # --- the world ------------------------------------------------------------------------

    def add_project(self, path: str) -> Project:
        project = Project(100 + len(self.projects) + 1, path)
        self.projects[project.id] = project
        return project

    def add_runner(self, payload: dict[str, Any]) -> Runner:
        runner = Runner.from_payload(payload)
        self.runners[runner.id] = runner
        return runner

    def add_job(self, project: Project, **fields: Any) -> Job:
        """A job with the next id (ids grow across the instance, as in GitLab)."""
        job = Job(id=next(self._ids), project_id=project.id, **fields)
        project.jobs.append(job)
        return job

    def add_hook(self, project: Project, **attributes: Any) -> dict[str, Any]:
        return self._create_hook(project, attributes)

    def finish(self, job: Job, status: str, finished: datetime, duration: float) -> None:
        job.status, job.finished_at, job.duration = status, finished, duration

    def all_jobs(self) -> list[tuple[Project, Job]]:
        return [(p, j) for p in self.projects.values() for j in p.jobs]

    def fail(self, status: int, times: int = 1, path: str | None = None) -> None:
        """The next `times` requests whose path and query match the regex `path` (any
        request without one) get `status`."""
        self._faults.append(Fault(status, times, re.compile(path) if path else None))

    def writes(self) -> list[tuple[str, str]]:
        return [call for call in self.calls if call[0] != "GET"]

    # --- server ---------------------------------------------------------------------------

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body in one segment, sent at once: no delayed-ACK stalls.
            wbufsize = 1 << 16
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def do_PUT(self) -> None:
                fake._handle(self, "PUT")

            def do_DELETE(self) -> None:
                fake._handle(self, "DELETE")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(request.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        with self._lock:
            self.calls.append((method, request.path))
            fault = self._fault(request.path)
        if self.delay:
            time.sleep(self.delay)
        if fault is not None:
            self._send(request, fault, {"message": f"{fault} Fake Outage"})
            return
        if request.headers.get("PRIVATE-TOKEN") != TOKEN:
            self._send(request, 401, {"message": "401 Unauthorized"})
            return
        body = json.loads(raw) if raw else {}
        try:
            with self._lock:
                status, document, headers = self._route(method, parts.path, query, body)
        except _Error as error:
            status, document, headers = error.status, error.document, {}
        self._send(request, status, document, headers)

    def _fault(self, path: str) -> int | None:
        for fault in self._faults:
            if fault.remaining > 0 and (fault.path is None or fault.path.search(path)):
                fault.remaining -= 1
                return fault.status
        return None

    def _send(
        self,
        request: BaseHTTPRequestHandler,
        status: int,
        document: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = b"" if document is None else json.dumps(document).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)

    # --- API --------------------------------------------------------------------------------

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        base = self.url
        route = path.removeprefix("/api/v4")
        if method == "POST" and (match := re.fullmatch(r"/projects/([^/]+)/pipeline", route)):
            return self._create_pipeline(match[1], body)
        if method == "GET" and route == "/projects":
            return self._list_projects(query)
        if match := re.fullmatch(r"/projects/(\d+)/jobs", route):
            return self._list_jobs(self._project(match[1]), query)
        if match := re.fullmatch(r"/projects/(\d+)/jobs/(\d+)", route):
            project = self._project(match[1])
            job = next((j for j in project.jobs if j.id == int(match[2])), None)
            if job is None:
                raise _Error(404, {"message": "404 Not found"})
            return 200, job.entity(project, base), {}
        if method == "POST" and route == "/user/runners":
            return 201, self._create_runner(body), {}
        if match := re.fullmatch(r"/runners/(\d+)", route):
            runner = self.runners.get(int(match[1]))
            if runner is None:
                raise _Error(404, {"message": "404 Runner Not Found"})
            if method == "PUT":
                self._update_runner(runner, body)
            return 200, runner.entity(), {}
        if match := re.fullmatch(r"/projects/(\d+)/hooks", route):
            project = self._project(match[1])
            if method == "POST":
                return 201, self._create_hook(project, body), {}
            hooks = [project.hooks[i] for i in sorted(project.hooks)]
            return self._offset_page(route, query, [_public(h) for h in hooks], counted=True)
        if match := re.fullmatch(r"/projects/(\d+)/hooks/(\d+)", route):
            project = self._project(match[1])
            hook = project.hooks.get(int(match[2]))
            if hook is None:
                raise _Error(404, {"message": "404 Not found"})
            if method == "PUT":
                hook.update(_hook_attributes(body, hook))
                return 200, _public(hook), {}
            if method == "DELETE":
                del project.hooks[hook["id"]]
                return 204, None, {}
            return 200, _public(hook), {}
        if route == "/applications":
            if method == "POST":
                return self._create_application(body)
            apps = self.applications.values()
            listed = [{k: v for k, v in app.items() if k != "secret"} for app in apps]
            return 200, listed, {}
        if (match := re.fullmatch(r"/applications/(\d+)", route)) and method == "DELETE":
            if self.applications.pop(int(match[1]), None) is None:
                raise _Error(404, {"message": "404 Application Not Found"})
            return 204, None, {}
        raise _Error(404, {"error": "404 Not Found"})

    def _create_application(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        missing = [k for k in ("name", "redirect_uri", "scopes") if not body.get(k)]
        if missing:
            raise _Error(400, {"error": f"{', '.join(missing)} is missing"})
        number = next(self._application_ids)
        application = {
            "id": number,
            "application_id": f"{number:064x}",
            "application_name": body["name"],
            "secret": f"{random.getrandbits(256):064x}",
            "callback_url": body["redirect_uri"],
            "confidential": body.get("confidential", True),
        }
        self.applications[number] = application
        # Documented: "Returns 200 if the request succeeds", with the secret shown once.
        return 200, application, {}

    def _create_runner(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("runner_type") not in {"instance_type", "group_type", "project_type"}:
            raise _Error(400, {"error": "runner_type does not have a valid value"})
        runner = Runner(
            id=1 + max(self.runners, default=0),
            description=body.get("description", ""),
            runner_type=body["runner_type"],
            tags=list(body.get("tag_list") or []),
        )
        self._update_runner(runner, body, partial=True)
        self.runners[runner.id] = runner
        # The authentication token is shown only here, never again.
        token = "glrt-t1_" + "".join(random.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=20))
        return {"id": runner.id, "token": token, "token_expires_at": None}

    def _update_runner(self, runner: Runner, body: dict[str, Any], partial: bool = False) -> None:
        given = {k: v for k, v in body.items() if k in RUNNER_SETTINGS}
        if not given and not partial:
            missing = ", ".join(sorted(RUNNER_SETTINGS))
            raise _Error(
                400, {"error": f"{missing} are missing, at least one parameter must be provided"}
            )
        if given.get("access_level", "not_protected") not in {"not_protected", "ref_protected"}:
            raise _Error(400, {"error": "access_level does not have a valid value"})
        for key, value in given.items():
            if key == "tag_list":
                runner.tags = list(value)
            else:
                setattr(runner, key, value)

    def _project(self, project_id: str) -> Project:
        project = self.projects.get(int(project_id))
        if project is None:
            raise _Error(404, {"message": "404 Project Not Found"})
        return project

    def _create_hook(self, project: Project, body: dict[str, Any]) -> dict[str, Any]:
        if not body.get("url"):
            raise _Error(400, {"error": "url is missing"})
        hook = {
            "id": next(self._hook_ids),
            "url": body["url"],
            "name": body.get("name"),
            "description": body.get("description"),
            "project_id": project.id,
            "created_at": stamp(datetime.now(UTC)),
            **HOOK_DEFAULTS,
            "push_events_branch_filter": None,
            "branch_filter_strategy": "wildcard",
            "alert_status": "executable",
            "disabled_until": None,
            "url_variables": [],
            "custom_webhook_template": None,
            "custom_headers": [],
            "token": None,
            "signing_token": None,
        }
        hook.update(_hook_attributes(body, hook))
        project.hooks[hook["id"]] = hook
        return _public(hook)

    def _list_projects(self, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        simple = (_one(query, "simple") or "").lower() == "true"
        projects = sorted(self.projects.values(), key=lambda p: p.id)
        if _one(query, "pagination") != "keyset":
            entities = [p.entity(self.url, simple) for p in projects]
            return self._offset_page("/projects", query, entities, counted=True)
        if _one(query, "order_by", "id") != "id":
            raise _Error(405, KEYSET_UNAVAILABLE)
        ascending = _one(query, "sort", "desc") == "asc"
        per_page = _per_page(query)
        if after := _one(query, "id_after"):
            projects = [p for p in projects if p.id > int(after)]
        if before := _one(query, "id_before"):
            projects = [p for p in projects if p.id < int(before)]
        if not ascending:
            projects.reverse()
        page = projects[:per_page]
        headers = {}
        # GitLab's keyset pager offers a next page whenever this one is full.
        if len(page) == per_page:
            bound = {"id_after" if ascending else "id_before": str(page[-1].id)}
            params = {k: v for k, v in query.items() if k not in ("id_after", "id_before")}
            link = f'<{self._href("/projects", params, bound)}>; rel="next"'
            headers = {"Links": link, "Link": link}
        return 200, [p.entity(self.url, simple) for p in page], headers

    def _list_jobs(
        self, project: Project, query: dict[str, list[str]]
    ) -> tuple[int, Any, dict[str, str]]:
        scope = query.get("scope[]") or query.get("scope") or []
        if any(s not in STATUSES for s in scope):
            raise _Error(400, {"error": "scope does not have a valid value"})
        jobs = sorted(
            (j for j in project.jobs if not scope or j.status in scope), key=lambda j: -j.id
        )
        route = f"/projects/{project.id}/jobs"
        if _one(query, "pagination") != "keyset":
            # The jobs endpoint pages without counting (`without_count: true`).
            status, page, headers = self._offset_page(route, query, jobs, counted=False)
            return status, [j.entity(project, self.url) for j in page], headers
        if (_one(query, "order_by", "id"), _one(query, "sort", "desc")) != ("id", "desc"):
            raise _Error(405, KEYSET_UNAVAILABLE)
        per_page = _per_page(query)
        if cursor := _one(query, "cursor"):
            last = int(json.loads(base64.urlsafe_b64decode(cursor))["id"])
            jobs = [j for j in jobs if j.id < last]
        page = jobs[:per_page]
        headers = {}
        if len(jobs) > per_page:
            token = base64.urlsafe_b64encode(
                json.dumps({"id": str(page[-1].id), "_kd": "n"}, separators=(",", ":")).encode()
            ).decode()
            params = {k: v for k, v in query.items() if k != "cursor"}
            link = f'<{self._href(route, params, {"cursor": token})}>; rel="next"'
            headers = {"Links": link, "Link": link}
        return 200, [j.entity(project, self.url) for j in page], headers

    def _offset_page(
        self, route: str, query: dict[str, list[str]], items: list[Any], *, counted: bool
    ) -> tuple[int, Any, dict[str, str]]:
        per_page = _per_page(query)
        page = max(int(_one(query, "page", "1") or 1), 1)
        total_pages = max((len(items) + per_page - 1) // per_page, 1)
        chunk = items[(page - 1) * per_page : page * per_page]
        has_next = page * per_page < len(items)
        params = {k: v for k, v in query.items() if k != "page"}
        headers = {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Next-Page": str(page + 1) if has_next else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "",
        }
        links = []
        if page > 1:
            links.append(f'<{self._href(route, params, {"page": str(page - 1)})}>; rel="prev"')
        if has_next:
            links.append(f'<{self._href(route, params, {"page": str(page + 1)})}>; rel="next"')
        links.append(f'<{self._href(route, params, {"page": "1"})}>; rel="first"')
        if counted:
            headers["X-Total"] = str(len(items))
            headers["X-Total-Pages"] = str(total_pages)
            links.append(f'<{self._href(route, params, {"page": str(total_pages)})}>; rel="last"')
        headers["Link"] = ", ".join(links)
        return 200, chunk, headers

    def _href(self, route: str, params: dict[str, list[str]], extra: dict[str, str]) -> str:
        merged = {**params, **{k: [v] for k, v in extra.items()}}
        pairs = [(k, v) for k in sorted(merged) for v in merged[k]]
        return f"{self.url}/api/v4{route}?{urlencode(pairs)}"

    # --- Pipelines: POST /projects/:id/pipeline (used by the datasets' analyses) ----------
    # GitLab's "Create a new pipeline" (doc/api/pipelines.md): `:id` is a project id or its
    # URL-encoded path; body `ref` (required), `variables` as [{key, value, variable_type}]
    # with variable_type `env_var` (default) or `file`; 201 with the Pipeline entity, status
    # `created`, source `api`; an unknown ref is 400 {"message": {"base": ["Reference not
    # found"]}}, an unknown project 404. A project knows the ref `main` unless given others.

    def add_ref(self, project: Project, ref: str) -> None:
        self.refs.setdefault(project.id, {"main"}).add(ref)

    def _project_by_id_or_path(self, given: str) -> Project:
        from urllib.parse import unquote

        wanted = unquote(given)
        for project in self.projects.values():
            if str(project.id) == wanted or project.path.lower() == wanted.lower():
                return project
        raise _Error(404, {"message": "404 Project Not Found"})

    def _create_pipeline(self, given: str, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        project = self._project_by_id_or_path(given)
        ref = body.get("ref")
        if not isinstance(ref, str) or not ref:
            raise _Error(400, {"error": "ref is missing"})
        variables = body.get("variables", [])
        for number, variable in enumerate(variables):
            if not isinstance(variable, dict) or "key" not in variable or "value" not in variable:
                raise _Error(400, {"error": f"variables[{number}][key] is missing"})
            if variable.get("variable_type", "env_var") not in ("env_var", "file"):
                raise _Error(400, {"error": f"variables[{number}][variable_type] is invalid"})
        if ref not in self.refs.get(project.id, {"main"}):
            raise _Error(400, {"message": {"base": ["Reference not found"]}})
        pipeline_id = 5000 + len(self.pipelines) + 1
        now = stamp(datetime.now(UTC))
        pipeline = {
            "id": pipeline_id,
            "iid": sum(1 for p in self.pipelines.values() if p["project_id"] == project.id) + 1,
            "project_id": project.id,
            "sha": f"{pipeline_id:040x}",
            "ref": ref,
            "status": "created",
            "source": "api",
            "before_sha": "0" * 40,
            "tag": False,
            "yaml_errors": None,
            "user": {"id": 1, "username": "root", "name": "Administrator", "state": "active"},
            "created_at": now,
            "updated_at": now,
            "started_at": None,
            "finished_at": None,
            "committed_at": None,
            "duration": None,
            "queued_duration": None,
            "coverage": None,
            "web_url": f"{self.url}/{project.path}/-/pipelines/{pipeline_id}",
        }
        self.pipelines[pipeline_id] = {**pipeline, "variables": variables}
        return 201, pipeline, {}


class _Error(Exception):
    def __init__(self, status: int, document: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.document = document


def _one(query: dict[str, list[str]], name: str, default: str | None = None) -> str | None:
    values = query.get(name)
    return values[-1] if values else default


def _per_page(query: dict[str, list[str]]) -> int:
    return min(max(int(_one(query, "per_page", "20") or 20), 1), 100)


def _hook_attributes(body: dict[str, Any], hook: dict[str, Any]) -> dict[str, Any]:
    """What a create or update sets (Grape coerces "true"/"false" strings to booleans)."""
    updates: dict[str, Any] = {}
    for name in (*HOOK_EVENTS, "enable_ssl_verification"):
        if name in body:
            value = body[name]
            updates[name] = value if isinstance(value, bool) else str(value).lower() == "true"
    for name in ("url", "name", "description", "token", "signing_token"):
        if name in body:
            updates[name] = body[name]
    # Saving a hook re-enables one GitLab disabled after failures.
    if "alert_status" in hook:
        updates.update({"alert_status": "executable", "disabled_until": None})
    return updates


def _public(hook: dict[str, Any]) -> dict[str, Any]:
    """A hook as the API shows it: never the tokens, only whether they are set."""
    shown = {k: v for k, v in hook.items() if k not in ("token", "signing_token")}
    shown["token_present"] = bool(hook.get("token"))
    shown["signing_token_present"] = bool(hook.get("signing_token"))
    return shown


RUNNERS = (payloads.GPU_RUNNER, payloads.CPU_RUNNER, payloads.LARGE_RUNNER)
# What jobs ask for: a subset of their runner's tags. Billing classifies by the runner's
# tags, so a fake where the two differ shows which one the bridge used.
JOB_TAGS = {11: ["gpu"], 12: [], 13: ["large"]}


def populate(
    fake: GitLabFake,
    rng: random.Random,
    paths: list[str],
    jobs: int,
    start: datetime = datetime(2026, 9, 1, tzinfo=UTC),
    days: int = 80,
) -> None:
    """Projects and `jobs` jobs in three-job pipelines, created over `days` days, in every
    state: finished (a few retried), canceled before a runner took them, skipped, manual,
    running and pending; durations with 0 to 3 decimals."""
    for runner in RUNNERS:
        fake.add_runner(runner)
    projects = [fake.add_project(path) for path in paths]
    pipelines = itertools.count(9001)
    current: dict[int, int] = {}
    for index in range(jobs):
        project = projects[index % len(projects)]
        if index // len(projects) % 3 == 0:  # every third job of a project opens a pipeline
            current[project.id] = next(pipelines)
        created = start + timedelta(seconds=int(index * days * 86400 / jobs))
        _add_random_job(fake, rng, project, current[project.id], created)


def _add_random_job(
    fake: GitLabFake, rng: random.Random, project: Project, pipeline: int, created: datetime
) -> None:
    roll = rng.random()
    runner = fake.runners[rng.choice(list(JOB_TAGS))]
    common = {
        "pipeline_id": pipeline,
        "created_at": created,
        "tag_list": JOB_TAGS[runner.id],
        "name": rng.choice(["prepare", "train", "evaluate"]),
    }
    if roll < 0.06:
        fake.add_job(project, status=rng.choice(["skipped", "manual", "created"]), **common)
        return
    if roll < 0.09:  # canceled before any runner took it
        fake.add_job(
            project, status="canceled", finished_at=created + timedelta(seconds=30), **common
        )
        return
    started = created + timedelta(seconds=rng.randint(1, 300))
    if roll < 0.12:
        fake.add_job(project, status="pending", **common)
        return
    if roll < 0.15:
        fake.add_job(project, status="running", started_at=started, runner=runner, **common)
        return
    duration = round(rng.uniform(1, 5400), rng.choice([0, 1, 2, 3]))
    finished = started + timedelta(seconds=int(duration) + 1)
    status = "success" if roll < 0.85 else rng.choice(["failed", "canceled"])
    fake.add_job(
        project,
        status=status,
        started_at=started,
        finished_at=finished,
        duration=duration,
        runner=runner,
        **common,
    )
    if status == "failed" and rng.random() < 0.5:  # retried: a new job id, billed on its own
        again = finished + timedelta(seconds=60)
        fake.add_job(
            project,
            status="success",
            started_at=again,
            duration=duration / 2,
            finished_at=again + timedelta(seconds=int(duration / 2) + 1),
            runner=runner,
            **{**common, "created_at": finished},
        )
