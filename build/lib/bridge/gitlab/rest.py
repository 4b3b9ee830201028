"""GitLab REST entities the reconciler reads, normalised to the same `JobFact` as webhooks.

A REST Job (`GET /projects/:id/jobs`, gitlab-contracts.md 1.1 and 2.1) differs from a Job
Hook: it names neither the project's path (only `pipeline.project_id`) nor the runner's
tags (`tag_list` is what the *job* asked for; the runner may carry more). Billing needs
both, so the reconciler stores each job inside an envelope that adds what it looked up:
the project it listed and the runner's `tag_list` from `GET /runners/:id`. The envelope is
the stored delivery body, so `bridge rebuild` derives exactly the same fact from it.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridge.bounds import Id, Seconds, Text, Timestamp
from bridge.facts import JobFact, Runner
from bridge.gitlab.webhooks import MalformedEvent, describe_validation_error

KIND = "api_job"  # the `kind` of every reconciled delivery


class _Entity(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class ApiRunner(_Entity):
    id: Id
    description: Text | None = None
    runner_type: Text | None = None


class ApiPipeline(_Entity):
    id: Id
    project_id: Id | None = None


class ApiCommit(_Entity):
    id: Text  # the SHA here (unlike `commit.id` of a Job Hook)


class ApiJob(_Entity):
    id: Id
    status: Text
    name: Text | None = None
    stage: Text | None = None
    ref: Text | None = None
    created_at: Timestamp = None
    started_at: Timestamp = None
    finished_at: Timestamp = None
    duration: Seconds | None = None
    failure_reason: Text | None = None
    pipeline: ApiPipeline | None = None
    commit: ApiCommit | None = None
    runner: ApiRunner | None = None
    tag_list: list[Text] = Field(default=[], max_length=1000)


class ProjectRef(_Entity):
    id: Id
    path_with_namespace: Text


class ReconciledJob(_Entity):
    """The stored body of a reconciled job: the REST Job as GitLab sent it, plus context."""

    project: ProjectRef
    # The runner's tags when the job ran on one; None when the runner is gone (then the
    # job's own tag_list stands in: a subset of the tags the runner had).
    runner_tags: list[Text] | None = None
    job: ApiJob

    def to_fact(self) -> JobFact:
        job = self.job
        runner = None
        if job.runner is not None:
            tags = self.runner_tags if self.runner_tags is not None else job.tag_list
            runner = Runner(
                job.runner.id, job.runner.description, job.runner.runner_type, tuple(tags)
            )
        return JobFact(
            build_id=job.id,
            status=job.status,
            project_path=self.project.path_with_namespace,
            project_id=self.project.id,
            pipeline_id=job.pipeline.id if job.pipeline else None,
            name=job.name,
            stage=job.stage,
            ref=job.ref,
            sha=job.commit.id if job.commit else None,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            duration=_seconds(job.duration),
            runner=runner,
            failure_reason=job.failure_reason,
        )


def _seconds(value: float | None) -> Decimal | None:
    # str() gives the shortest repr of the float GitLab sent, as for webhooks.
    return None if value is None else Decimal(str(value))


def envelope(project: dict[str, Any], runner_tags: list[str] | None, job: dict[str, Any]) -> bytes:
    """The delivery body for one reconciled job (the REST Job dict as decoded)."""
    body = {
        "project": {"id": project["id"], "path_with_namespace": project["path_with_namespace"]},
        "runner_tags": runner_tags,
        "job": job,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def parse_envelope(body: bytes) -> ReconciledJob:
    try:
        return ReconciledJob.model_validate_json(body)
    except ValidationError as exc:
        raise MalformedEvent(describe_validation_error(exc)) from None
