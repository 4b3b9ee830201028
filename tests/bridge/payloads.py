"""GitLab webhook payloads shaped exactly as GitLab sends them (gitlab-contracts.md 1.1, 1.2).

Every field GitLab documents is present, including the traps: `commit.id` is the pipeline id
in job events, `runner` is null before pickup, `project_name` is a display name, timestamps
come in the legacy `... UTC` form and as ISO 8601.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

GPU_RUNNER = {
    "id": 11,
    "description": "gpu-runner-1",
    "runner_type": "instance_type",
    "active": True,
    "is_shared": True,
    "tags": ["gpu", "docker"],
}
CPU_RUNNER = {
    "id": 12,
    "description": "cpu-runner-1",
    "runner_type": "instance_type",
    "active": True,
    "is_shared": True,
    "tags": ["docker"],
}
LARGE_RUNNER = {
    "id": 13,
    "description": "cpu-large-1",
    "runner_type": "group_type",
    "active": True,
    "is_shared": False,
    "tags": ["docker", "large"],
}


def legacy(moment: datetime | None) -> str | None:
    """`2019-11-21 13:34:18 UTC`, as older job events and all pipeline events send."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(moment: datetime | None) -> str | None:
    """`2021-02-23T02:41:37Z`, as the *_iso fields send."""
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_millis(moment: datetime | None) -> str | None:
    """`2021-02-23T02:41:37.886Z`, as the documented example sends."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def job_event(
    build_id: int,
    status: str,
    *,
    project: str = "acme-vision/segmentation",
    project_id: int = 101,
    pipeline_id: int = 9001,
    runner: dict[str, Any] | None = None,
    created: datetime | None = None,
    started: datetime | None = None,
    finished: datetime | None = None,
    duration: float | None = None,
    name: str = "train",
    style: str = "iso",
) -> dict[str, Any]:
    """A Job Hook body. `style`: "iso" (17/18.x, with *_iso), "millis", or "legacy" (old)."""
    created = created or datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
    plain = {"iso": iso_millis, "millis": iso_millis, "legacy": legacy}[style]
    sha = uuid.uuid5(uuid.NAMESPACE_OID, str(pipeline_id)).hex + "0" * 8
    group, _, short = project.partition("/")
    payload: dict[str, Any] = {
        "object_kind": "build",
        "ref": "main",
        "tag": False,
        "before_sha": "0" * 40,
        "sha": sha,
        "build_id": build_id,
        "build_name": name,
        "build_stage": "train",
        "build_status": status,
        "build_created_at": plain(created),
        "build_started_at": plain(started),
        "build_finished_at": plain(finished),
        "build_duration": duration,
        "build_queued_duration": 1.25 if started else None,
        "build_allow_failure": False,
        "build_failure_reason": "script_failure" if status == "failed" else "unknown_failure",
        "retries_count": 0,
        "pipeline_id": pipeline_id,
        "project_id": project_id,
        "project_name": f"{group.title()} / {short.title()}",
        "user": {
            "id": 3,
            "name": "Ada Scientist",
            "username": "ada",
            "avatar_url": None,
            "email": "[REDACTED]",
        },
        "commit": {
            "id": pipeline_id,  # the pipeline id, not the SHA (a GitLab quirk)
            "name": None,
            "sha": sha,
            "message": "Train with new features\n",
            "author_name": "Ada Scientist",
            "author_email": "ada@example.com",
            "author_url": "https://gitlab.example.com/ada",
            "status": status,
            "duration": duration,
            "started_at": plain(started),
            "finished_at": plain(finished),
        },
        "repository": {
            "name": short,
            "url": f"git@gitlab.example.com:{project}.git",
            "description": "",
            "homepage": f"https://gitlab.example.com/{project}",
            "git_http_url": f"https://gitlab.example.com/{project}.git",
            "git_ssh_url": f"git@gitlab.example.com:{project}.git",
            "visibility_level": 0,
        },
        "project": {
            "id": project_id,
            "name": short,
            "description": "",
            "web_url": f"https://gitlab.example.com/{project}",
            "avatar_url": None,
            "git_ssh_url": f"git@gitlab.example.com:{project}.git",
            "git_http_url": f"https://gitlab.example.com/{project}.git",
            "namespace": group.title(),
            "visibility_level": 0,
            "path_with_namespace": project,
            "default_branch": "main",
            "ci_config_path": None,
        },
        "runner": runner,
        "environment": None,
    }
    if style != "legacy":
        payload["build_created_at_iso"] = iso(created)
        payload["build_started_at_iso"] = iso(started)
        payload["build_finished_at_iso"] = iso(finished)
        payload["commit"]["started_at_iso"] = iso(started)
        payload["commit"]["finished_at_iso"] = iso(finished)
    return payload


def pipeline_event(
    pipeline_id: int,
    builds: list[dict[str, Any]],
    *,
    project: str = "acme-vision/segmentation",
    project_id: int = 101,
    status: str = "success",
) -> dict[str, Any]:
    """A Pipeline Hook body; `builds` are dicts made by `pipeline_build`."""
    sha = uuid.uuid5(uuid.NAMESPACE_OID, str(pipeline_id)).hex + "0" * 8
    return {
        "object_kind": "pipeline",
        "object_attributes": {
            "id": pipeline_id,
            "iid": 7,
            "name": None,
            "ref": "main",
            "tag": False,
            "sha": sha,
            "before_sha": "0" * 40,
            "source": "push",
            "status": status,
            "detailed_status": "passed",
            "stages": ["train"],
            "created_at": "2026-10-01 09:00:00 UTC",
            "finished_at": "2026-10-01 09:30:00 UTC",
            "duration": 1800,
            "queued_duration": 2,
            "variables": [],
            "url": f"https://gitlab.example.com/{project}/-/pipelines/{pipeline_id}",
        },
        "merge_request": None,
        "user": {"id": 3, "name": "Ada Scientist", "username": "ada", "avatar_url": None},
        "project": {
            "id": project_id,
            "name": project.split("/")[-1],
            "description": "",
            "web_url": f"https://gitlab.example.com/{project}",
            "path_with_namespace": project,
            "default_branch": "main",
        },
        "commit": {
            "id": sha,  # the SHA here, unlike in job events
            "message": "Train with new features\n",
            "timestamp": "2026-10-01T08:59:00+00:00",
            "url": f"https://gitlab.example.com/{project}/-/commit/{sha}",
            "author": {"name": "Ada Scientist", "email": "ada@example.com"},
        },
        "builds": builds,
    }


def pipeline_build(
    build_id: int,
    status: str,
    *,
    runner: dict[str, Any] | None = None,
    created: datetime | None = None,
    started: datetime | None = None,
    finished: datetime | None = None,
    duration: float | None = None,
    name: str = "train",
) -> dict[str, Any]:
    return {
        "id": build_id,
        "stage": "train",
        "name": name,
        "status": status,
        "created_at": legacy(created or datetime(2026, 10, 1, 9, 0, tzinfo=UTC)),
        "started_at": legacy(started),
        "finished_at": legacy(finished),
        "duration": duration,
        "queued_duration": 1.5 if started else None,
        "failure_reason": "script_failure" if status == "failed" else None,
        "when": "on_success",
        "manual": False,
        "allow_failure": False,
        "user": {"id": 3, "name": "Ada Scientist", "username": "ada"},
        "runner": runner,
        "artifacts_file": {"filename": None, "size": None},
        "environment": None,
    }


def lifecycle(
    build_id: int,
    *,
    runner: dict[str, Any] | None,
    started: datetime,
    finished: datetime,
    duration: float | None,
    status: str = "success",
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """The events one job produces: created, pending, running (runner set), terminal."""
    return [
        job_event(build_id, "created", **kwargs),
        job_event(build_id, "pending", **kwargs),
        job_event(build_id, "running", runner=runner, started=started, **kwargs),
        job_event(
            build_id,
            status,
            runner=runner,
            started=started,
            finished=finished,
            duration=duration,
            **kwargs,
        ),
    ]
