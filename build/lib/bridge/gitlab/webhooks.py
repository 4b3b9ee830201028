"""GitLab webhook payloads (Job Hook, Pipeline Hook, System Hook) normalised to `JobFact`s.

Models are strict about the fields we bill on (an id that is a string is an error, not a
guess) and ignore every other field, because GitLab adds fields release after release.
Shapes: gitlab-contracts.md sections 1.1, 1.2 and 1.8.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import from_json

from bridge.bounds import Id, Seconds, Text, Timestamp
from bridge.facts import JobFact, Runner


class MalformedJson(ValueError):
    """The body is not JSON at all."""


class MalformedEvent(ValueError):
    """The payload is JSON but not a usable GitLab event; the message says which field."""


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class RunnerPayload(_Payload):
    id: Id
    description: Text | None = None
    runner_type: Text | None = None
    tags: list[Text] = Field(default=[], max_length=1000)

    def to_runner(self) -> Runner:
        return Runner(self.id, self.description, self.runner_type, tuple(self.tags))


class ProjectPayload(_Payload):
    id: Id | None = None
    path_with_namespace: Text


class RepositoryPayload(_Payload):
    homepage: Text | None = None


class JobHook(_Payload):
    object_kind: Literal["build"]
    build_id: Id
    build_name: Text | None = None
    build_stage: Text | None = None
    build_status: Text
    build_created_at: Timestamp = None
    build_started_at: Timestamp = None
    build_finished_at: Timestamp = None
    build_created_at_iso: Timestamp = None
    build_started_at_iso: Timestamp = None
    build_finished_at_iso: Timestamp = None
    build_duration: Seconds | None = None
    build_failure_reason: Text | None = None
    ref: Text | None = None
    sha: Text | None = None
    pipeline_id: Id | None = None
    project_id: Id | None = None
    project: ProjectPayload | None = None
    repository: RepositoryPayload | None = None
    runner: RunnerPayload | None = None

    def project_path(self) -> str:
        if self.project is not None:
            return self.project.path_with_namespace
        # Payloads before the `project` object (GitLab < 14) only name the repository's page.
        if self.repository is not None and self.repository.homepage:
            path = urlsplit(self.repository.homepage).path.strip("/")
            if path:
                return path
        raise MalformedEvent("project.path_with_namespace: missing (and no repository.homepage)")

    def to_fact(self) -> JobFact:
        return JobFact(
            build_id=self.build_id,
            status=self.build_status,
            project_path=self.project_path(),
            project_id=self.project_id if self.project_id is not None else _id(self.project),
            pipeline_id=self.pipeline_id,
            name=self.build_name,
            stage=self.build_stage,
            ref=self.ref,
            sha=self.sha,
            # The *_iso fields are the documented, unambiguous ones; prefer them.
            created_at=self.build_created_at_iso or self.build_created_at,
            started_at=self.build_started_at_iso or self.build_started_at,
            finished_at=self.build_finished_at_iso or self.build_finished_at,
            duration=_seconds(self.build_duration),
            runner=self.runner.to_runner() if self.runner else None,
            failure_reason=self.build_failure_reason,
        )


class PipelineBuild(_Payload):
    id: Id
    name: Text | None = None
    stage: Text | None = None
    status: Text
    created_at: Timestamp = None
    started_at: Timestamp = None
    finished_at: Timestamp = None
    duration: Seconds | None = None
    failure_reason: Text | None = None
    runner: RunnerPayload | None = None


class PipelineAttributes(_Payload):
    id: Id
    ref: Text | None = None
    sha: Text | None = None


class PipelineHook(_Payload):
    object_kind: Literal["pipeline"]
    object_attributes: PipelineAttributes
    project: ProjectPayload
    builds: list[PipelineBuild] = Field(default=[], max_length=10000)

    def to_facts(self) -> list[JobFact]:
        pipeline = self.object_attributes
        return [
            JobFact(
                build_id=build.id,
                status=build.status,
                project_path=self.project.path_with_namespace,
                project_id=self.project.id,
                pipeline_id=pipeline.id,
                name=build.name,
                stage=build.stage,
                ref=pipeline.ref,
                sha=pipeline.sha,
                created_at=build.created_at,
                started_at=build.started_at,
                finished_at=build.finished_at,
                duration=_seconds(build.duration),
                runner=build.runner.to_runner() if build.runner else None,
                failure_reason=build.failure_reason,
            )
            for build in self.builds
        ]


class ProjectCreated(_Payload):
    event_name: Literal["project_create"]
    project_id: Id
    path_with_namespace: Text


@dataclass(frozen=True)
class ParsedEvent:
    """What one webhook delivery means: job facts to apply, or a system event, or nothing."""

    kind: str
    facts: list[JobFact] = field(default_factory=list)
    project_created: ProjectCreated | None = None


_JOB_OR_PIPELINE: TypeAdapter[JobHook | PipelineHook] = TypeAdapter(
    Annotated[JobHook | PipelineHook, Field(discriminator="object_kind")]
)


def parse_body(body: bytes) -> ParsedEvent:
    """Normalise a raw body. Job and pipeline events, nearly all traffic, are parsed and
    validated in one pass by pydantic's JSON parser; anything else (or anything invalid)
    takes the general path, which also words the errors."""
    try:
        event = _JOB_OR_PIPELINE.validate_json(body)
    except ValidationError:
        return parse_event(decode_json(body))
    if isinstance(event, JobHook):
        return ParsedEvent("build", [event.to_fact()])
    return ParsedEvent("pipeline", event.to_facts())


def decode_json(body: bytes) -> Any:
    """Any JSON document, nested at most a couple hundred levels (the parser's own bound)."""
    try:
        return from_json(body)
    except ValueError as exc:  # not JSON, not UTF-8, or nested too deeply
        raise MalformedJson(str(exc)) from None


def parse_event(payload: Any) -> ParsedEvent:
    """Normalise a decoded JSON body; raises MalformedEvent with the offending field."""
    if not isinstance(payload, dict):
        raise MalformedEvent("body: expected a JSON object")
    kind = payload.get("object_kind")
    try:
        if kind == "build":
            return ParsedEvent("build", [JobHook.model_validate(payload).to_fact()])
        if kind == "pipeline":
            return ParsedEvent("pipeline", PipelineHook.model_validate(payload).to_facts())
        if kind is None and payload.get("event_name") == "project_create":
            created = ProjectCreated.model_validate(payload)
            return ParsedEvent("project_create", project_created=created)
    except ValidationError as exc:
        raise MalformedEvent(describe_validation_error(exc)) from None
    if kind is None and "event_name" not in payload:
        raise MalformedEvent("object_kind: missing (not a GitLab webhook payload)")
    if kind is not None and not isinstance(kind, str):
        raise MalformedEvent("object_kind: expected a string")
    return ParsedEvent(str(kind or payload.get("event_name")))


def describe_validation_error(exc: ValidationError) -> str:
    """`field.path: problem` for each error, short enough for an HTTP error message."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)[:5]
    )


def _seconds(value: float | None) -> Decimal | None:
    # str() gives the shortest repr of the float GitLab sent, not its binary expansion.
    return None if value is None else Decimal(str(value))


def _id(project: ProjectPayload | None) -> int | None:
    return project.id if project is not None else None
